"""Engine.process / prepare on a real flat FAISS index (and a real ONNX reranker)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamrec.index import CandidateIndex, SearchResult
from streamrec.models.scorer import Scorer
from streamrec.streams.core.engine import Engine
from streamrec.streams.core.features import FEATURE_NAMES
from streamrec.streams.core.state import UserState
from streamrec.streams.wire import Event, Recommendation

Catalog = Any  # conftest.Catalog: ids, vectors, clusters, in_cluster(c)

MakeEngine = Callable[..., Engine]
MakeStream = Callable[..., list[Event]]


def run(
    engine: Engine, events: Sequence[Event], states: dict[str, UserState], batch: int = 16
) -> list[Recommendation]:
    recs = []
    for start in range(0, len(events), batch):
        recs += engine.process(events[start : start + batch], states)
    return recs


@pytest.mark.parametrize("rule", ["decayed", "multi"])
def test_exactly_one_recommendation_per_event_in_order(
    make_engine: MakeEngine, make_stream: MakeStream, rule: str
) -> None:
    events = make_stream(100)
    recs = run(make_engine(rule=rule), events, {}, batch=32)
    assert [r.event_id for r in recs] == [e.event_id for e in events]
    assert [r.user_id for r in recs] == [e.user_id for e in events]
    assert all(len(r.items) == 10 == len(r.scores) for r in recs)
    assert all(len(set(r.items)) == len(r.items) for r in recs)
    assert [r.event_ts for r in recs] == [e.ts for e in events]
    assert {r.emitted_ts for r in recs} == {42}


@pytest.mark.parametrize("rule", ["decayed", "multi"])
def test_never_recommends_an_item_the_user_already_interacted_with(
    make_engine: MakeEngine, make_stream: MakeStream, rule: str
) -> None:
    events = make_stream(300, users=4)  # ~75 events per user over 600 items: many repeats
    recs = run(make_engine(rule=rule), events, {}, batch=25)
    history: dict[str, set[str]] = {}
    for event, rec in zip(events, recs, strict=True):
        history.setdefault(event.user_id, set()).add(event.item_id)
        assert not history[event.user_id] & set(rec.items), event


def test_personalized_recommendations_follow_the_users_cluster(
    make_engine: MakeEngine,
    catalog: Catalog,
) -> None:
    members = catalog.in_cluster(3)
    events = [Event(f"e{j}", "u", members[j], "click", 1000 * j) for j in range(5)]
    rec = make_engine().process(events, {})[-1]
    assert rec.source == "personalized"
    cluster = dict(zip(catalog.ids, catalog.clusters, strict=True))
    assert all(cluster[item] == 3 for item in rec.items)


def test_cold_user_gets_recently_popular_items_minus_seen(
    make_engine: MakeEngine, make_stream: MakeStream
) -> None:
    engine = make_engine(cold_threshold=3)
    states: dict[str, UserState] = {}
    run(engine, make_stream(200), states)
    top = engine.popular.top()[0]
    newcomer = Event("n1", "newcomer", top[0], "click", 1_800_000_000_000)
    [rec] = engine.process([newcomer], states)
    assert rec.source == "popular"
    assert rec.items == [i for i in engine.popular.top()[0] if i != top[0]][:10]
    assert rec.scores == sorted(rec.scores, reverse=True)


def test_duplicate_event_leaves_state_and_popularity_unchanged(
    make_engine: MakeEngine, make_stream: MakeStream
) -> None:
    engine = make_engine(rule="multi")
    events = make_stream(40)
    states: dict[str, UserState] = {}
    first = engine.process(events, states)
    before = {u: s.to_map() for u, s in states.items()}
    popular_before = engine.popular.to_map()
    again = engine.process(events, states)  # a redelivery of the whole batch
    assert {u: s.to_map() for u, s in states.items()} == before
    assert engine.popular.to_map() == popular_before
    assert engine.last_batch_stats.duplicates == 40 and engine.last_batch_stats.applied == 0
    assert len(again) == 40
    # Each duplicate is answered from the final state: the user's last recommendation.
    last = {r.user_id: r.items for r in first}
    assert all(r.items == last[r.user_id] for r in again)


def test_each_event_sees_the_state_right_after_it_even_within_one_batch(
    make_engine: MakeEngine, make_stream: MakeStream
) -> None:
    events = make_stream(60, users=3)
    one_batch = make_engine().process(events, {})
    one_by_one = run(make_engine(), events, {}, batch=1)
    assert [r.items for r in one_batch] == [r.items for r in one_by_one]


def test_same_inputs_give_identical_recommendations_and_states(
    make_engine: MakeEngine, make_stream: MakeStream
) -> None:
    events = make_stream(120)
    outputs = []
    for _ in range(2):
        states: dict[str, UserState] = {}
        recs = run(make_engine(rule="multi"), events, states, batch=20)
        outputs.append(([r.to_map() for r in recs], {u: s.to_map() for u, s in states.items()}))
    assert outputs[0] == outputs[1]


def test_stage_stats_describe_the_last_batch(
    make_engine: MakeEngine, make_stream: MakeStream
) -> None:
    engine = make_engine(cold_threshold=2)
    events = make_stream(30, users=10)
    sets = engine.prepare(events, {})
    assert engine.last_batch_stats.candidates == sum(len(c.ids) for c in sets)
    engine.process(events, {})
    stats = engine.last_batch_stats
    assert stats.events == 30 and stats.applied == 30 and stats.duplicates == 0
    assert stats.personalized + stats.popular == 30 and stats.popular >= 10
    assert set(stats.stages()) == {"apply", "search", "features", "rerank"}
    assert all(v >= 0 for v in stats.stages().values())
    assert stats.total_s == pytest.approx(sum(stats.stages().values()))


class CountingIndex:
    """The real index, counting the calls the engine makes (batching is the claim here)."""

    def __init__(self, index: CandidateIndex) -> None:
        self.index = index
        self.dim = index.dim
        self.metric = index.metric
        self.searches: list[int] = []

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.index

    def live_ids(self) -> Collection[str]:
        return self.index.live_ids()

    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[set[str]] | None = None,
        *,
        with_vectors: bool = False,
    ) -> SearchResult:
        self.searches.append(len(queries))
        return self.index.search(queries, k, exclude, with_vectors=with_vectors)

    def get_vectors(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return self.index.get_vectors(ids)


def test_one_search_per_batch_with_every_interest_as_a_query(
    make_engine: MakeEngine, make_stream: MakeStream, index: CandidateIndex
) -> None:
    engine = make_engine(rule="multi", interests=3, interest_threshold=0.9)
    counting = CountingIndex(index)
    engine.index = counting
    events = make_stream(64, users=8)
    states: dict[str, UserState] = {}
    engine.process(events, states)
    assert len(counting.searches) == 1
    assert counting.searches[0] > 64  # several interests per user, all in the one call


def test_deleted_items_are_never_served_and_upserted_ones_can_be(
    make_engine: MakeEngine,
    catalog: Catalog,
) -> None:
    engine = make_engine(cold_threshold=1)
    members = catalog.in_cluster(2)
    states: dict[str, UserState] = {}
    [rec] = engine.process([Event("e0", "u", members[0], "click", 0)], states)
    engine.popular.add(rec.items[0], 0, weight=100.0)  # also the most popular item
    engine.apply_item_delete([rec.items[0], rec.items[0], "no-such-item"])
    strong = 10 * catalog.vectors[catalog.ids.index(members[1])]  # scores above anything
    engine.apply_item_upsert(["fresh"], strong[None, :])
    [after] = engine.process([Event("e1", "u", members[1], "click", 1000)], states)
    [cold] = engine.process([Event("e2", "v", "unknown-item", "click", 2000)], states)
    assert rec.items[0] not in after.items and rec.items[0] not in cold.items
    assert after.items[0] == "fresh"
    assert cold.source == "popular"


def test_prepare_before_gives_the_candidates_served_just_before_the_event(
    make_engine: MakeEngine, make_stream: MakeStream
) -> None:
    events = [e for e in make_stream(80, users=2) if e.user_id == "user0"]
    served, logged = make_engine(), make_engine()
    served_states: dict[str, UserState] = {}
    served_sets = [served.prepare([e], served_states)[0] for e in events]
    logged_sets = logged.prepare(events, {}, moment="before")
    assert logged_sets[0].source == "popular"  # nothing known before the first event
    for after_prev, before_next in zip(served_sets, logged_sets[1:], strict=False):
        assert after_prev.ids == before_next.ids
        assert before_next.features.shape == (len(before_next.ids), len(FEATURE_NAMES))


def test_reranker_orders_candidates_in_one_batched_call(
    make_engine: MakeEngine, make_stream: MakeStream, reranker_onnx: Path
) -> None:
    scorer = Scorer.load(reranker_onnx, FEATURE_NAMES, device="cpu")
    engine = make_engine(scorer=scorer)
    events = make_stream(40)
    sets = make_engine().prepare(events, {})
    recs = engine.process(events, {})
    assert all(r.model_version == "core-test" for r in recs)
    for cands, rec in zip(sets, recs, strict=True):
        if cands.source != "personalized":
            continue
        scores = scorer.score(cands.features)
        best = np.argsort(-scores, kind="stable")[:10]
        assert rec.items == [cands.ids[i] for i in best]
        np.testing.assert_allclose(rec.scores, scores[best], rtol=1e-6)


def test_apply_moves_state_exactly_as_process_does(
    make_engine: MakeEngine, make_stream: MakeStream
) -> None:
    events = make_stream(90)
    warmed: dict[str, UserState] = {}
    served: dict[str, UserState] = {}
    warm_engine, serve_engine = make_engine(rule="multi"), make_engine(rule="multi")
    assert warm_engine.apply(events, warmed) == 90
    run(serve_engine, events, served, batch=30)
    assert {u: s.to_map() for u, s in warmed.items()} == {u: s.to_map() for u, s in served.items()}
    assert warm_engine.popular.to_map() == serve_engine.popular.to_map()
    assert warm_engine.apply(events, warmed) == 0  # all already applied


def test_events_on_items_outside_the_catalog_count_but_do_not_move_vectors(
    make_engine: MakeEngine,
) -> None:
    states: dict[str, UserState] = {}
    recs = make_engine().process(
        [Event("a", "u", "item5", "click", 0), Event("b", "u", "gone", "save", 1000)], states
    )
    state = states["u"]
    assert state.n_events == 2 and state.n_known == 1 and state.n_saves == 1
    assert recs[1].source == "personalized" and "gone" not in recs[1].items


def test_before_an_event_its_own_action_is_not_yet_counted_as_popular(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine()
    states: dict[str, UserState] = {}
    engine.apply([Event("a", "first", "item9", "click", 0)], states)
    [cands] = engine.prepare([Event("b", "second", "item9", "click", 0)], states, moment="before")
    pop_log = cands.features[:, FEATURE_NAMES.index("pop_log")]
    assert cands.source == "popular" and cands.ids == ["item9"]
    np.testing.assert_allclose(pop_log, [np.log1p(1.0)], rtol=1e-6)  # not log1p(2)
    assert engine.popular.counts(["item9"])[0] == pytest.approx(2.0)  # counted afterwards


def test_interests_share_the_candidates_in_proportion_to_their_weight() -> None:
    from streamrec.streams.core.retrieval import interleave

    strong = [f"s{i}" for i in range(6)]
    weak = ["s0", *(f"w{i}" for i in range(5))]  # s0 is found by both: kept once
    scores = [np.arange(6, 0, -1, dtype=np.float32), np.arange(6, 0, -1, dtype=np.float32)]
    ids, merged, _ = interleave([strong, weak], scores, np.array([2 / 3, 1 / 3]), 6)
    assert ids == ["s0", "s1", "s2", "w0", "s3", "s4"]
    np.testing.assert_allclose(merged, [6, 5, 4, 5, 3, 2])
    assert interleave([strong], scores[:1], np.ones(1), 3)[0] == strong[:3]


def test_an_empty_batch_gives_no_recommendations(make_engine: MakeEngine) -> None:
    engine = make_engine()
    assert engine.process([], {}) == []
    assert engine.last_batch_stats.events == 0


class RecordingStates(dict[str, UserState]):
    """A plain mapping that records assignments, as a Faust table turns them into changelog
    writes (mutating a stored object in place would not be persisted)."""

    def __init__(self) -> None:
        super().__init__()
        self.assigned: list[str] = []

    def __setitem__(self, key: str, value: UserState) -> None:
        self.assigned.append(key)
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value


def test_every_user_of_a_batch_is_written_back_by_assignment(
    make_engine: MakeEngine, make_stream: MakeStream
) -> None:
    events = make_stream(50, users=5)
    states = RecordingStates()
    engine = make_engine()
    engine.process(events[:25], states)
    states.assigned.clear()
    engine.process(events[25:], states)
    assert set(states.assigned) == {e.user_id for e in events[25:]}


def test_batch_start_popularity_keeps_a_batchs_later_events_out_of_its_lists(
    make_engine: MakeEngine,
) -> None:
    batch = [Event("a", "first", "item9", "click", 0), Event("b", "second", "item5", "click", 0)]
    fresh = make_engine(cold_threshold=2).process(batch, {})  # batch_end: the whole batch
    start = make_engine(cold_threshold=2, popular_as_of="batch_start")
    as_of_start = start.process(batch, {})
    assert fresh[0].items == ["item5"] and fresh[1].items == ["item9"]
    assert as_of_start[0].items == [] and as_of_start[1].items == []
    assert start.popular.counts(["item9", "item5"]).tolist() == [1.0, 1.0]  # counted after
    [later] = start.process([Event("c", "third", "item7", "click", 0)], {})
    assert later.items == ["item9", "item5"]  # equal counts: first appearance first


def test_cold_recommendation_is_what_a_never_seen_user_gets(
    make_engine: MakeEngine, make_stream: MakeStream
) -> None:
    engine = make_engine(popular_as_of="batch_start")
    states: dict[str, UserState] = {}
    run(engine, make_stream(120), states)
    top = engine.cold_recommendation(10)
    engine.apply_item_delete([top[0]])
    cold = engine.cold_recommendation(10)
    assert top[0] not in cold and cold[:9] == top[1:]
    [rec] = engine.process(
        [Event("n", "newcomer", "not-in-catalog", "click", 1_700_000_200_000)], states
    )
    assert rec.source == "popular" and rec.items == cold
    assert engine.cold_recommendation(3) == cold[:3]


class LastItemReranker:
    """A real batch reranker (no model file): cosine of each candidate to the user's newest
    history item, looked up through ``vectors_of``; it records the batches it was given."""

    model_version = "last-item"

    def __init__(self) -> None:
        self.batches: list[Any] = []

    def score_batch(self, batch: Any) -> np.ndarray:
        self.batches.append(batch)
        newest = [c.history[-1][0] for c in batch.contexts]
        last, _ = batch.vectors_of(newest)
        cand = batch.candidate_vectors
        dots = np.einsum("nd,nd->n", cand, last[batch.owner])
        return dots / np.linalg.norm(cand, axis=1) / np.linalg.norm(last[batch.owner], axis=1)


def test_a_batch_reranker_sees_each_rows_user_candidate_and_vector_in_one_call(
    make_engine: MakeEngine, make_stream: MakeStream, index: CandidateIndex
) -> None:
    events = make_stream(48, users=6)
    states: dict[str, UserState] = {}
    make_engine().apply(events[:24], states)
    expected = make_engine().prepare(events[24:], {u: s for u, s in _copy(states).items()})
    reranker = LastItemReranker()
    engine = make_engine(scorer=reranker)
    recs = engine.process(events[24:], states)
    [batch] = reranker.batches
    personal = [c for c in expected if c.source == "personalized"]
    assert [e.event_id for e in batch.events] == [c.event.event_id for c in personal]
    assert batch.candidate_ids == [i for c in personal for i in c.ids]
    np.testing.assert_array_equal(batch.features, np.vstack([c.features for c in personal]))
    np.testing.assert_array_equal(
        batch.candidate_vectors, index.get_vectors(batch.candidate_ids)[0]
    )
    for b, c in enumerate(personal):
        rows = slice(batch.offsets[b], batch.offsets[b + 1])
        assert batch.candidate_ids[rows] == c.ids and set(batch.owner[rows]) == {b}
        assert batch.contexts[b].history[-1][0] == c.event.item_id  # state right after it
    assert dict(batch.action_weights) == {"click": 1.0, "save": 2.0}
    scores = reranker.score_batch(batch)
    by_event = {r.event_id: r for r in recs}
    for b, c in enumerate(personal):
        mine = scores[batch.offsets[b] : batch.offsets[b + 1]]
        best = np.argsort(-mine, kind="stable")[:10]
        assert by_event[c.event.event_id].items == [c.ids[i] for i in best]
        assert by_event[c.event.event_id].model_version == "last-item"


def _copy(states: dict[str, UserState]) -> dict[str, UserState]:
    return {u: UserState.from_map(s.to_map()) for u, s in states.items()}
