"""Recently popular: decayed counts by event time, top-N order, drops."""

from __future__ import annotations

import pytest

from streamrec.streams.core.popular import Popular

HOUR_MS = 3_600_000


def test_recent_activity_outranks_older_heavier_activity() -> None:
    popular = Popular(half_life_s=3600.0, top_n=10)
    for _ in range(3):
        popular.add("old", 0)
    popular.add("new", 2 * HOUR_MS)  # "old" has decayed to 3/4 by now
    ids, counts = popular.top()
    assert ids == ["new", "old"]
    assert counts.tolist() == pytest.approx([1.0, 0.75])


def test_counts_stay_exact_across_many_half_lives() -> None:
    popular = Popular(half_life_s=1.0, top_n=5)
    popular.add("a", 0)
    for step in range(1, 200):  # forces several anchor rescales
        popular.add("b", step * 1000)
    assert popular.counts(["a"])[0] == pytest.approx(2.0**-199, rel=1e-9)
    assert popular.counts(["b", "unknown"]).tolist() == pytest.approx([2.0, 0.0], rel=1e-6)


def test_top_is_limited_and_ties_keep_first_appearance_order() -> None:
    popular = Popular(half_life_s=60.0, top_n=3)
    for item in ["c", "a", "d", "b"]:
        popular.add(item, 1000)
    popular.add("b", 1000)
    assert popular.top()[0] == ["b", "c", "a"]


def test_dropped_items_are_never_served_again_until_acted_on() -> None:
    popular = Popular(half_life_s=60.0, top_n=3)
    popular.add("x", 0, weight=5.0)
    popular.add("y", 0)
    popular.drop(["x", "never-seen"])
    assert popular.top()[0] == ["y"]
    assert popular.counts(["x"])[0] == 0.0
    popular.add("x", 0)
    assert popular.top()[0] == ["y", "x"]


def test_snapshot_round_trip_keeps_counts_and_order() -> None:
    popular = Popular(half_life_s=3600.0, top_n=10)
    for j, item in enumerate(["a", "b", "b", "c", "c", "c"]):
        popular.add(item, j * 60_000)
    back = Popular.from_map(popular.to_map())
    assert back.top()[0] == popular.top()[0]
    assert back.top()[1].tolist() == pytest.approx(popular.top()[1].tolist(), rel=1e-9)


def test_from_events_holds_what_the_engine_counts_and_survives_a_file(tmp_path) -> None:
    from streamrec.streams.wire import Event

    events = [
        Event("1", "u", "a", "click", 0),
        Event("2", "v", "b", "save", HOUR_MS),
        Event("3", "w", "a", "click", 2 * HOUR_MS, weight=3.0),
    ]
    popular = Popular.from_events(
        events, half_life_s=3600.0, top_n=5, action_weights={"click": 1.0, "save": 2.0}
    )
    assert popular.top()[0] == ["a", "b"]
    assert popular.counts(["a", "b"]).tolist() == pytest.approx([0.25 + 3.0, 1.0])
    popular.save(tmp_path / "popular.msgpack")
    loaded = Popular.load(tmp_path / "popular.msgpack", half_life_s=7200.0, top_n=1)
    assert loaded.top()[0] == ["a"] and loaded.top_n == 1
    assert loaded.counts(["a", "b"]).tolist() == pytest.approx([3.25, 1.0])
    loaded.add("b", 4 * HOUR_MS, 0.0)  # two hours later, with the new half-life of 2 h
    assert loaded.counts(["a", "b"]).tolist() == pytest.approx([3.25 / 2, 0.5])


def test_one_far_future_event_cannot_zero_the_counts_or_overflow() -> None:
    popular = Popular(half_life_s=3600.0, top_n=10)
    for item in ["a", "a", "b"]:
        popular.add(item, 0)
    popular.add("x", 2**64 - 1)  # moves the clock 32 half-lives at most
    ids, counts = popular.top()
    assert ids == ["x", "a", "b"] and (counts > 0).all()
    assert counts[1] / counts[2] == pytest.approx(2.0)
