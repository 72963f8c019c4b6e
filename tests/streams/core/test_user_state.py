"""UserState: bounded, msgpack round-trip, and idempotence book-keeping."""

from __future__ import annotations

import msgpack

from streamrec.streams.core.state import UserState
from streamrec.streams.wire import Event

BOUNDS = {"recent_size": 3, "seen_size": 4, "applied_ids": 5}


def ev(j: int, item: str | None = None, ts: int | None = None, action: str = "click") -> Event:
    return Event(f"e{j}", "u", item or f"i{j}", action, 1000 * j if ts is None else ts)


def test_state_round_trips_through_msgpack_exactly() -> None:
    state = UserState()
    for j in range(7):
        state.record(ev(j, action="save" if j % 2 else "click"), **BOUNDS)
    state.vectors = [[0.1, -2.5, 3.0]]
    state.masses = [1.75]
    state.rule_ts = 6000
    wire = msgpack.packb(state.to_map(), use_bin_type=True)
    back = UserState.from_map(msgpack.unpackb(wire, raw=False))
    assert back == state
    assert back.to_map() == state.to_map()


def test_ring_seen_and_applied_ids_stay_bounded() -> None:
    state = UserState()
    for j in range(20):
        state.record(ev(j), **BOUNDS)
    assert [item for item, _, _ in state.recent] == ["i17", "i18", "i19"]
    assert state.seen == ["i16", "i17", "i18", "i19"]
    assert [event_id for event_id, _ in state.applied] == [f"e{j}" for j in range(15, 20)]
    assert state.n_events == 20


def test_seen_keeps_distinct_items_with_the_latest_last() -> None:
    state = UserState()
    for j, item in enumerate(["a", "b", "a", "c"]):
        state.record(ev(j, item=item), **BOUNDS)
    assert state.seen == ["b", "a", "c"]
    assert state.exclude == {"a", "b", "c"}


def test_an_applied_event_is_recognised_even_after_its_id_is_forgotten() -> None:
    state = UserState()
    events = [ev(j) for j in range(12)]
    for e in events:
        assert not state.is_applied(e)
        state.record(e, **BOUNDS)
    # All 12 are recognised: the last 5 by id, the older ones by the ts floor.
    assert all(state.is_applied(e) for e in events)
    assert not state.is_applied(ev(12))


def test_many_events_in_one_millisecond_are_all_applied_within_the_bound() -> None:
    state = UserState()
    same_ms = [ev(j, ts=5000) for j in range(5)]
    for e in same_ms:
        assert not state.is_applied(e)
        state.record(e, **BOUNDS)
    assert state.applied_floor_ts == -1
    assert all(state.is_applied(e) for e in same_ms)


def test_unknown_layout_version_is_refused() -> None:
    data = UserState().to_map()
    data["v"] = 99
    try:
        UserState.from_map(data)
    except ValueError as exc:
        assert "v99" in str(exc)
    else:
        raise AssertionError("an unknown layout version must not load")
