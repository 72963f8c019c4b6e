"""Shared statistics across engines (workers): each commits the others' deltas through the
one commit point, an event counts once wherever its delta comes from, and a snapshot
restores them exactly."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from streamrec.streams.core.covis import CoVisitation
from streamrec.streams.core.engine import Engine
from streamrec.streams.core.popular import Popular
from streamrec.streams.core.state import UserState
from streamrec.streams.core.statistics import SharedStats, StatsDelta, event_key
from streamrec.streams.wire import Event


def _worker(make_engine: Callable[..., Engine], dedupe: int = 10_000) -> Engine:
    """An engine with co-visitation and a deduplicating commit point, as a worker runs it."""
    base = make_engine(covis_weight=1.0)
    engine = Engine(
        base.index,
        None,
        base.rule,
        base.popular,
        base.config,
        clock=base.clock,
        covis=CoVisitation(window=3),
    )
    engine.stats = SharedStats(engine.stats.statistics, dedupe=dedupe)
    return engine


def _counts(engine: Engine) -> dict[str, float]:
    ids, counts = engine.popular.top()
    return dict(zip(ids, counts.tolist(), strict=True))


def _covis(engine: Engine, items: list[str]) -> np.ndarray:
    assert engine.covis is not None
    return engine.covis.scores([[i] for i in items], [items] * len(items))


def _same_statistics(a: Engine, b: Engine) -> None:
    ca, cb = _counts(a), _counts(b)
    assert ca.keys() == cb.keys()
    assert np.allclose([ca[i] for i in ca], [cb[i] for i in ca], rtol=1e-12, atol=0)
    probe = list(ca)[:25]
    # The top-M table sums decayed float32 counts: batches committed in another order
    # round differently in the last bits, nothing more.
    assert np.allclose(_covis(a, probe), _covis(b, probe), rtol=1e-5, atol=0)
    assert a.stats.events == b.stats.events


def test_two_workers_exchanging_deltas_hold_the_counts_of_one_that_saw_everything(
    make_engine: Callable[..., Engine], make_stream: Callable[..., list[Event]]
) -> None:
    events = make_stream(400, users=10)
    alone, first, second = (_worker(make_engine) for _ in range(3))
    states: dict = {}
    s1: dict = {}
    s2: dict = {}
    for start in range(0, len(events), 37):
        batch = events[start : start + 37]
        alone.process(batch, states)
        # users split over two workers, as partitions are
        mine = [e for e in batch if sum(map(ord, e.user_id)) % 2 == 0]
        theirs = [e for e in batch if sum(map(ord, e.user_id)) % 2 == 1]
        first.process(mine, s1)
        second.process(theirs, s2)
        d1, d2 = first.last_delta, second.last_delta
        # the wire codec in between, as on the deltas topic
        second.stats.commit(StatsDelta.from_map(d1.to_map()))
        first.stats.commit(StatsDelta.from_map(d2.to_map()))
    assert alone.stats.events == len(events)
    _same_statistics(first, alone)
    _same_statistics(second, alone)


def test_an_event_counts_once_whichever_copy_of_its_delta_comes_first(
    make_engine: Callable[..., Engine], make_stream: Callable[..., list[Event]]
) -> None:
    """A crash after publishing a batch's delta but before storing its states: the restarted
    worker applies the batch again; the old delta (replayed) and the new one count once."""
    events = make_stream(120)
    reference = _worker(make_engine)
    reference.process(events, {})

    crashed = _worker(make_engine)
    states: dict = {}
    crashed.process(events[:60], states)
    checkpoint = crashed.stats.snapshot()
    stored = {u: state.to_map() for u, state in states.items()}  # what the table holds
    crashed.process(events[60:], states)  # published, states lost with the process
    published = crashed.last_delta

    for replay_first in (True, False):
        restarted = _worker(make_engine)
        restarted.stats.restore(checkpoint)
        again = {u: UserState.from_map(m) for u, m in stored.items()}
        if replay_first:
            restarted.stats.commit(published)
            restarted.process(events[60:], again)
            assert len(restarted.last_delta) == 0  # nothing new to publish
        else:
            restarted.process(events[60:], again)
            assert len(restarted.stats.commit(published)) == 0
        _same_statistics(restarted, reference)


def test_dedupe_remembers_only_its_window() -> None:
    stats = SharedStats([Popular(3600.0)], dedupe=2)
    one = StatsDelta(("a",), (1000,), (1.0,), ((),), (event_key("u", "e1"),))
    two = dataclasses.replace(one, keys=(event_key("u", "e2"),))
    three = dataclasses.replace(one, keys=(event_key("u", "e3"),))
    assert len(stats.commit(one)) == 1
    assert len(stats.commit(one)) == 0
    stats.commit(two)
    stats.commit(three)  # pushes e1 out
    assert len(stats.commit(one)) == 1
    assert stats.events == 4
    # without dedupe every delta counts
    plain = SharedStats([Popular(3600.0)])
    plain.commit(one)
    assert len(plain.commit(one)) == 1


def test_a_snapshot_restores_counts_keys_and_events_in_place(
    make_engine: Callable[..., Engine], make_stream: Callable[..., list[Event]]
) -> None:
    events = make_stream(200)
    source = _worker(make_engine)
    source.process(events[:150], {})
    target = _worker(make_engine)
    popular, covis = target.popular, target.covis
    target.stats.restore(source.stats.snapshot())
    assert target.popular is popular and target.covis is covis  # engines keep their refs
    _same_statistics(target, source)
    # the remembered keys came along: the same events do not count again
    assert len(target.stats.commit(source.last_delta)) == 0
    states: dict = {}
    source.process(events[150:], states)
    target.process(events[150:], {})
    _same_statistics(target, source)


def test_a_snapshot_of_other_statistics_is_refused(make_engine: Callable[..., Engine]) -> None:
    without_covis = make_engine()
    with pytest.raises(ValueError, match="snapshot holds"):
        _worker(make_engine).stats.restore(without_covis.stats.snapshot())
