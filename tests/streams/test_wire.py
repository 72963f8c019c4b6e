"""The wire format: events and recommendations round-trip, and every kind of bad record is
rejected with its precise reason (never any exception but InvalidRecord)."""

from __future__ import annotations

import math

import msgpack
import pytest

from streamrec.streams.wire import (
    DEFAULT_MAX_EVENT_BYTES,
    Event,
    InvalidRecord,
    Reason,
    Recommendation,
    TsWindow,
    decode_event,
    decode_recommendation,
    encode_event,
    encode_recommendation,
    pack,
)

GOOD = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "action": "click", "ts": 1_700_000}


def reason_of(data: bytes, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> tuple[Reason, str]:
    with pytest.raises(InvalidRecord) as caught:
        decode_event(data, max_bytes)
    return caught.value.reason, caught.value.detail


def with_(**changes: object) -> bytes:
    """GOOD with some fields changed (a value of ... removes the field)."""
    obj = {**GOOD, **changes}
    return pack({k: v for k, v in obj.items() if v is not ...})


def test_an_event_round_trips_with_and_without_optional_fields() -> None:
    plain = Event("e1", "u1", "i1", "save", 1_700_000)
    full = Event("e2", "u2", "i2", "click", 0, surface="home", weight=2.5)
    assert decode_event(encode_event(plain)) == plain
    assert decode_event(encode_event(full)) == full
    assert set(msgpack.unpackb(encode_event(plain))) == {
        "event_id", "user_id", "item_id", "action", "ts",
    }  # fmt: skip


def test_an_integer_weight_decodes_as_a_float_and_unknown_extra_fields_are_ignored() -> None:
    event = decode_event(with_(weight=3, campaign="x"))
    assert event.weight == 3.0 and isinstance(event.weight, float)


@pytest.mark.parametrize("name", ["event_id", "user_id", "item_id", "action", "ts"])
def test_a_missing_field_is_named(name: str) -> None:
    assert reason_of(with_(**{name: ...})) == (Reason.MISSING_FIELD, f"missing field {name!r}")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"user_id": 7}, "user_id"),
        ({"item_id": b"i1"}, "item_id"),
        ({"ts": "1700000"}, "ts"),
        ({"ts": 1.5}, "ts"),
        ({"ts": True}, "ts"),
        ({"surface": 3}, "surface"),
        ({"weight": "heavy"}, "weight"),
        ({"weight": False}, "weight"),
    ],
)
def test_a_wrong_type_names_the_field(changes: dict[str, object], field: str) -> None:
    reason, detail = reason_of(with_(**changes))
    assert reason is Reason.WRONG_TYPE
    assert detail.startswith(f"field {field!r} must be")


@pytest.mark.parametrize(
    "changes",
    [{"event_id": ""}, {"ts": -1}, {"weight": -0.5}, {"weight": math.inf}, {"weight": math.nan}],
)
def test_out_of_range_values_are_bad_values(changes: dict[str, object]) -> None:
    assert reason_of(with_(**changes))[0] is Reason.BAD_VALUE


def test_an_unknown_action_is_rejected_listing_the_known_ones() -> None:
    assert reason_of(with_(action="purchase")) == (
        Reason.UNKNOWN_ACTION,
        "unknown action 'purchase' (known: click, save)",
    )


def test_truncated_records_are_truncated_not_garbage() -> None:
    data = with_()
    assert reason_of(b"") == (Reason.TRUNCATED, "empty record")
    for cut in (1, len(data) // 2, len(data) - 1):
        assert reason_of(data[:cut])[0] is Reason.TRUNCATED


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",  # a byte msgpack never uses
        b"\xa2\xff\xfe",  # a str that is not UTF-8
        msgpack.packb({(1, 2): 1}),  # an array as a map key: valid framing, no dict
        with_() + b"\x00",  # trailing bytes after one value
    ],
)
def test_bytes_that_are_not_one_msgpack_value_are_not_msgpack(data: bytes) -> None:
    assert reason_of(data)[0] is Reason.NOT_MSGPACK


def test_a_value_that_is_not_a_map_is_named() -> None:
    assert reason_of(pack([1, 2])) == (Reason.NOT_A_MAP, "expected a map, got list")


def test_a_map_with_integer_keys_is_a_missing_field_not_undecodable() -> None:
    assert reason_of(msgpack.packb({1: "x"}))[0] is Reason.MISSING_FIELD


def test_oversize_is_checked_before_decoding() -> None:
    big = with_(surface="s" * 5000)
    assert reason_of(big)[0] is Reason.OVERSIZE
    assert decode_event(big, max_bytes=len(big)).surface == "s" * 5000
    assert reason_of(b"\xc1" * 100, max_bytes=64)[0] is Reason.OVERSIZE


NOW_MS = 1_700_000_000_000


@pytest.mark.parametrize(
    ("ts", "why"),
    [
        (2**64 - 1, "after now"),
        (NOW_MS * 1000, "after now"),  # microseconds
        (NOW_MS + 300_001, "after now"),
        (NOW_MS // 1000, "before"),  # seconds
        (0, "before"),
    ],
)
def test_a_ts_outside_the_window_is_out_of_range(ts: int, why: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        TsWindow().check(ts, NOW_MS)
    assert caught.value.reason is Reason.TS_OUT_OF_RANGE and why in caught.value.detail


def test_the_window_holds_movielens_100k_and_a_few_minutes_of_clock_skew() -> None:
    window = TsWindow()
    for ts in (874_724_710_000, NOW_MS, NOW_MS + 300_000):  # 1997-09-20 (MovieLens-100k)
        window.check(ts, NOW_MS)


def test_the_reason_value_is_what_a_dlq_record_carries() -> None:
    with pytest.raises(InvalidRecord) as caught:
        decode_event(with_(action="buy"))
    assert str(caught.value).startswith("unknown_action: ")
    assert caught.value.reason.value == "unknown_action"


def test_a_recommendation_round_trips_as_a_map_with_float_scores() -> None:
    import numpy as np

    rec = Recommendation(
        user_id="u1",
        items=["a", "b"],
        scores=list(np.array([0.5, 0.25], dtype=np.float32)),
        event_id="e9",
        event_ts=1000,
        emitted_ts=1005,
        model_version="m1",
        source="personalized",
        extra={"latency_ms": 5},
    )
    decoded = decode_recommendation(encode_recommendation(rec))
    assert decoded == {
        "user_id": "u1", "items": ["a", "b"], "scores": [0.5, 0.25], "event_id": "e9",
        "event_ts": 1000, "emitted_ts": 1005, "model_version": "m1", "source": "personalized",
        "latency_ms": 5,
    }  # fmt: skip
    assert all(type(score) is float for score in decoded["scores"])


def test_extra_fields_cannot_overwrite_a_recommendations_own_fields() -> None:
    rec = Recommendation("u1", [], [], None, None, 1, "m1", "popular", extra={"user_id": "x"})
    assert rec.to_map()["user_id"] == "u1"


def test_a_message_that_is_not_a_recommendation_is_rejected() -> None:
    with pytest.raises(InvalidRecord):
        decode_recommendation(with_())
    with pytest.raises(InvalidRecord):
        decode_recommendation(b"\xc1")
