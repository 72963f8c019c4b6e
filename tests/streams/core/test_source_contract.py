"""The CandidateSource contract, checked against every source the engine runs (like the
index's contract suite), on a real flat FAISS index and real popularity and co-visitation
counts."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from streamrec.index import CandidateIndex
from streamrec.streams.core.engine import Engine
from streamrec.streams.core.retrieval import (
    AnnSource,
    CandidateList,
    CandidateSource,
    CovisSource,
    PopularSource,
    retrieve,
)
from streamrec.streams.core.state import UserState
from streamrec.streams.core.updates import Snapshot, apply_events
from streamrec.streams.wire import Event

N = 30
SOURCES = ["ann", "covis", "popular"]


@pytest.fixture(params=["decayed", "multi"])
def engine(request: pytest.FixtureRequest, make_engine: Callable[..., Engine]) -> Engine:
    return make_engine(rule=request.param, cold_threshold=3, covis=True, covis_candidates=10)


@pytest.fixture
def snapshots(engine: Engine, make_stream: Callable[..., list[Event]]) -> list[Snapshot]:
    """Snapshots of warm and cold users (some users act once or twice only), with
    popularity counted from the earlier events."""
    events = make_stream(400, users=12)
    states: dict[str, UserState] = {}
    engine.apply(events[:300], states)
    newcomers = [Event(f"n{j}", f"new{j % 3}", e.item_id, "click", e.ts + 1) for j, e in
                 enumerate(events[300:306])]  # fmt: skip
    applied = apply_events(
        [*events[300:], *newcomers],
        states,
        engine.rule,
        engine.config,
        engine.index.get_vectors,
        dim=engine.index.dim,
        window=None,
        moment="after",
    )
    return applied.snapshots


def source_of(name: str, engine: Engine) -> CandidateSource:
    if name == "ann":
        return AnnSource(engine.index, engine.rule.max_queries)
    if name == "covis":
        assert engine.covis is not None
        return CovisSource(engine.covis, engine.index)
    return PopularSource(engine.popular, engine.index)


@pytest.fixture(params=SOURCES)
def source(request: pytest.FixtureRequest, engine: Engine) -> CandidateSource:
    return source_of(request.param, engine)


def fill(source: CandidateSource, snapshots: list[Snapshot], n: int = N) -> list[CandidateList]:
    lists = [CandidateList(s) for s in snapshots]
    source.fill(lists, n, with_vectors=True)
    return lists


def test_it_leads_exactly_the_lists_of_users_it_serves(
    source: CandidateSource, snapshots: list[Snapshot]
) -> None:
    lists = fill(source, snapshots)
    for lst in lists:
        served = source.serves(lst.snapshot.context)
        assert lst.source == (source.name if served else "")
        assert served or (lst.ids == [] and len(lst.scores) == 0)
    assert any(lst.source for lst in lists)


def test_candidates_are_distinct_known_unexcluded_and_at_most_n(
    source: CandidateSource, snapshots: list[Snapshot], index: CandidateIndex
) -> None:
    for lst in fill(source, snapshots):
        assert len(lst.ids) == len(set(lst.ids)) == len(lst.scores) <= N
        assert lst.scores.dtype == np.float32
        assert not set(lst.ids) & lst.snapshot.exclude
        assert all(item in index for item in lst.ids)


def test_vectors_are_those_of_the_leading_candidates(
    source: CandidateSource, snapshots: list[Snapshot], index: CandidateIndex
) -> None:
    for lst in fill(source, snapshots):
        if lst.vectors is not None:
            expected, found = index.get_vectors(lst.ids[: len(lst.vectors)])
            assert found.all()
            np.testing.assert_array_equal(lst.vectors, expected)


def test_a_list_does_not_depend_on_the_rest_of_the_batch(
    source: CandidateSource, snapshots: list[Snapshot]
) -> None:
    together = fill(source, snapshots)
    for j in range(0, len(snapshots), 17):
        (alone,) = fill(source, [snapshots[j]])
        assert alone.ids == together[j].ids
        np.testing.assert_allclose(alone.scores, together[j].scores, rtol=1e-6)


def test_a_list_another_source_leads_keeps_its_head(
    source: CandidateSource, snapshots: list[Snapshot], engine: Engine
) -> None:
    other = source_of(next(s for s in SOURCES if source_of(s, engine).name != source.name), engine)
    head = [CandidateList(s) for s in snapshots]
    other.fill(head, N // 2, with_vectors=False)
    before = [(lst.source, list(lst.ids), lst.scores.copy()) for lst in head]
    source.fill(head, N, with_vectors=False)
    for lst, (name, ids, scores) in zip(head, before, strict=True):
        if not name:  # a user the other source does not serve: this one may lead
            continue
        assert lst.source == name and lst.ids[: len(ids)] == ids
        np.testing.assert_array_equal(lst.scores[: len(ids)], scores)
        assert not set(lst.ids) & lst.snapshot.exclude and len(set(lst.ids)) == len(lst.ids)


def test_deleted_items_are_never_candidates(
    source: CandidateSource, snapshots: list[Snapshot], engine: Engine
) -> None:
    first = fill(source, snapshots)
    gone = sorted({item for lst in first for item in lst.ids[:3]})
    engine.apply_item_delete(gone)
    for lst in fill(source, snapshots):
        assert not set(lst.ids) & set(gone)


def test_the_engine_runs_every_source_and_fills_every_list(
    engine: Engine, snapshots: list[Snapshot]
) -> None:
    names = [type(s).__name__ for s, _ in engine.sources()]
    assert names == ["AnnSource", "CovisSource", "PopularSource"]
    lists = retrieve(snapshots, engine.sources(), with_vectors=False)
    n, extra = engine.config.candidates, engine.config.covis_candidates
    assert all(n <= len(lst.ids) <= n + extra and lst.source for lst in lists)
    assert {lst.source for lst in lists} == {"personalized", "popular"}
    assert any(len(lst.ids) > n for lst in lists)  # co-visitation added to some lists


def test_co_visitation_candidates_are_scored_like_the_search_hits(
    engine: Engine, snapshots: list[Snapshot]
) -> None:
    """The neighbours appended to a searched list carry the score the search would give
    them (the best query's inner product), so the list stays one retrieval ranking."""
    lists = retrieve(snapshots, engine.sources()[:2], with_vectors=True)
    n = engine.config.candidates
    extended = [lst for lst in lists if len(lst.ids) > n]
    assert extended
    for lst in extended:
        vectors, found = engine.index.get_vectors(lst.ids[n:])
        assert found.all() and lst.vectors is not None
        np.testing.assert_array_equal(lst.vectors[n:], vectors)
        context = lst.snapshot.context
        best = (vectors @ context.queries[context.query_weights > 0].T).max(axis=1)
        np.testing.assert_allclose(lst.scores[n:], best, rtol=1e-5, atol=1e-6)


def test_no_co_visitation_source_without_co_visitation(make_engine: Callable[..., Engine]) -> None:
    for engine in (make_engine(), make_engine(covis=True, covis_candidates=0)):
        assert [type(s).__name__ for s, _ in engine.sources()] == ["AnnSource", "PopularSource"]
