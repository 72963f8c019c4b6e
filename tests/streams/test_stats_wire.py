"""The global statistics' wire codec: deltas-topic messages and chunked checkpoints."""

from __future__ import annotations

import pytest

from streamrec.streams.core.popular import Popular
from streamrec.streams.core.statistics import SharedStats, StatsDelta
from streamrec.streams.stats_wire import (
    Checkpoint,
    DeltaMessage,
    checkpoint_records,
    decode_delta,
    encode_delta,
    latest_values,
    newest,
    pieces,
    read_checkpoints,
)
from streamrec.streams.wire import pack

DELTA = StatsDelta(("a", "b"), (10, 20), (1.0, 2.0), (("x",), ()), (7, 2**64 - 1))


def test_a_delta_message_round_trips() -> None:
    message = DeltaMessage("origin-1", 3, DELTA)
    assert decode_delta(encode_delta(message)) == message


@pytest.mark.parametrize(
    "value",
    [
        b"\xc1",
        pack([1, 2]),
        pack({"origin": "o", "seq": 1}),
        pack({"origin": "o", "seq": 1, "delta": {**DELTA.to_map(), "keys": [1]}}),
    ],
)
def test_a_bad_delta_message_is_a_value_error(value: bytes) -> None:
    with pytest.raises(ValueError, match="not a stats delta"):
        decode_delta(value)


def test_a_big_delta_is_sent_in_pieces_in_order() -> None:
    n = 10
    delta = StatsDelta(
        tuple(f"i{j}" for j in range(n)),
        tuple(range(n)),
        (1.0,) * n,
        ((),) * n,
        tuple(range(n)),
    )
    parts = pieces(delta, size=4)
    assert [len(p) for p in parts] == [4, 4, 2]
    assert sum((p.items for p in parts), ()) == delta.items
    assert pieces(StatsDelta()) == []


def _checkpoint(created: int, slot: int = 0, size: int = 3000) -> Checkpoint:
    stats = SharedStats([Popular(3600.0)], dedupe=100)
    stats.commit(
        StatsDelta(
            tuple(f"item{j}" for j in range(size)),
            (1000,) * size,
            (1.0,) * size,
            ((),) * size,
            tuple(range(size)),
        )
    )
    return Checkpoint(f"id{created}", created, {0: 42}, "origin", 9, stats.snapshot(), slot)


def test_a_checkpoint_round_trips_through_chunks_with_its_manifest_last() -> None:
    checkpoint = _checkpoint(1)
    records = checkpoint_records("w1", checkpoint, chunk_bytes=1000)
    assert len(records) > 3 and records[-1][0] == b"w1/manifest"
    assert all(len(v) < 1100 for _, v in records)
    found = read_checkpoints(latest_values(records))
    assert found == {"w1": checkpoint}
    restored = SharedStats([Popular(3600.0)], dedupe=100)
    restored.restore(found["w1"].snapshot)
    assert restored.events == 3000


def test_a_half_written_checkpoint_leaves_the_previous_one_readable() -> None:
    old = checkpoint_records("w1", _checkpoint(1, slot=0), chunk_bytes=1000)
    new = checkpoint_records("w1", _checkpoint(2, slot=1, size=5000), chunk_bytes=1000)
    killed = old + new[:-2]  # the new one's last chunk and manifest never written
    assert read_checkpoints(latest_values(killed))["w1"].id == "id1"
    assert read_checkpoints(latest_values(old + new))["w1"].id == "id2"
    # a manifest whose chunks were overwritten by a later checkpoint's is not used
    overwritten = old + checkpoint_records("w1", _checkpoint(3, slot=0), chunk_bytes=1000)[:-1]
    assert "w1" not in read_checkpoints(latest_values(overwritten))


def test_the_newest_checkpoint_of_any_worker_is_restored() -> None:
    records = checkpoint_records("w1", _checkpoint(5)) + checkpoint_records("w2", _checkpoint(7))
    records.append((b"w3/manifest", b"\xc1"))  # unreadable: ignored
    found = read_checkpoints(latest_values(records))
    assert set(found) == {"w1", "w2"}
    checkpoint = newest(found)
    assert checkpoint is not None and checkpoint.id == "id7"
    assert newest({}) is None


def test_latest_values_follow_tombstones() -> None:
    assert latest_values([(b"k", b"1"), (b"k", None), (b"j", b"2"), (None, b"x")]) == {b"j": b"2"}
