"""The shared statistics take a batch at one point: after its lists, or before them when
serving asks for the freshest counts."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from streamrec.streams.core.covis import CoVisitation
from streamrec.streams.core.engine import Engine
from streamrec.streams.core.statistics import StatsDelta
from streamrec.streams.wire import Event


def _with_covis(engine: Engine) -> Engine:
    return Engine(
        engine.index,
        None,
        engine.rule,
        engine.popular,
        dataclasses.replace(engine.config, covis_weight=4.0),
        clock=engine.clock,
        covis=CoVisitation(window=3),
    )


def test_no_list_of_a_batch_depends_on_a_later_event_of_it(
    make_engine: Callable[..., Engine], make_stream: Callable[..., list[Event]]
) -> None:
    """The lists of events ≤ p in one batch are the same whatever the events after p are,
    for both moments and with co-visitation on (batch-start statistics)."""
    events = make_stream(120, users=3)
    p = 60
    changed = events[: p + 1] + [
        dataclasses.replace(e, item_id=events[(j * 7) % p].item_id, action="save")
        for j, e in enumerate(events[p + 1 :])
    ]
    for moment in ("after", "before"):
        lists = []
        for stream in (events, changed):
            engine = _with_covis(make_engine(popular_as_of="batch_start"))
            states: dict = {}
            engine.apply(events[:30], states)  # some statistics to read
            recs = engine.process(stream[30:], states, moment=moment)
            lists.append([(r.items, r.scores) for r in recs[: p + 1 - 30]])
        assert lists[0] == lists[1], moment


def test_the_batch_is_committed_once_as_one_delta(
    make_engine: Callable[..., Engine], make_stream: Callable[..., list[Event]]
) -> None:
    events = make_stream(20)
    engine = _with_covis(make_engine(popular_as_of="batch_start"))
    engine.process(events, {})
    delta = engine.last_delta
    assert list(delta.items) == [e.item_id for e in events]
    assert StatsDelta.from_map(delta.to_map()) == delta
    assert len(engine.popular) == len({e.item_id for e in events})
    assert len(engine.covis or ()) == len({e.item_id for e in events})
    # a duplicate batch applies nothing and commits an empty delta
    states: dict = {}
    engine.process(events, states)
    engine.process(events, states)
    assert len(engine.last_delta) == 0


def test_serving_reads_its_batch_counts_fresh_evaluation_as_of_the_batch_start(
    make_engine: Callable[..., Engine], make_stream: Callable[..., list[Event]]
) -> None:
    """A cold user's list (recently popular) already counts the batch's earlier events with
    ``batch_end``; with ``batch_start`` the batch's items are not popular yet."""
    hot = make_stream(1)[0]
    batch = [dataclasses.replace(hot, event_id=f"h{j}", user_id=f"w{j}") for j in range(5)]
    newcomer = Event("n0", "newcomer", "not-in-the-index", "click", hot.ts + 1)  # stays cold
    fresh = make_engine(popular_as_of="batch_end").process([*batch, newcomer], {})
    lagged = make_engine(popular_as_of="batch_start").process([*batch, newcomer], {})
    assert fresh[-1].source == "popular" and hot.item_id in fresh[-1].items
    assert lagged[-1].items == []
