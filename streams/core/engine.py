"""The engine core: one micro-batch of events in, exactly one recommendation per event out.

Kafka-free on purpose: the Faust agent, the training-example logger and the prequential
evaluator all call :class:`Engine`, so what is trained on, evaluated and served is the same
code. :meth:`Engine.process` runs the steps of DESIGN.md "The path of one event", one module
each:

1. **apply** (:mod:`.updates`) — the events, in order, to their users' states (update
   rules: :mod:`.rules`), each snapshotted right after it (or right before it, for
   training and prequential evaluation); the newly applied ones staged as the batch's
   :class:`~.statistics.StatsDelta`.
2. **retrieve** (:mod:`.retrieval`) — candidates from the candidate sources in turn,
   merged into one list per event: one batched ANN search for the warm users, the
   co-visitation neighbours of their recent items, recently-popular items for cold users
   and short lists; minus seen, excluded and deleted items.
3. **features** and 4. **rank** (:mod:`.ranking`) — one feature build and ONE reranker call
   over all personalized candidates of the batch (retrieval order without one); top-k.

The shared statistics (recently-popular counts, co-visitation, anything added later) change
only when the delta is committed, through :class:`~.statistics.SharedStats`, at ONE point
of the batch (:meth:`Engine._reading`): before retrieval for serving's freshest counts
(:attr:`EngineConfig.popular_as_of` ``batch_end`` with ``moment="after"``), otherwise after
the lists are ranked, so every list reads them as of the batch start and none sees an
event after its own (no future, whatever the batch size).

Stage timings of the last batch are in :attr:`Engine.last_batch_stats` for metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from streamrec.streams.core.config import EngineConfig
from streamrec.streams.core.covis import CoVisitation
from streamrec.streams.core.popular import Popular
from streamrec.streams.core.ranking import (
    BatchReranker,
    Ranker,
    Reranker,
    bare,
    ranker_of,
    top_k,
    with_features,
)
from streamrec.streams.core.retrieval import (
    PERSONALIZED,
    POPULAR,
    AnnSource,
    CandidateSet,
    CandidateSource,
    CovisSource,
    Index,
    PopularSource,
    retrieve,
)
from streamrec.streams.core.rules import UpdateRule
from streamrec.streams.core.state import UserState
from streamrec.streams.core.statistics import SharedStats, StatsDelta
from streamrec.streams.core.updates import Applied, Moment, apply_events
from streamrec.streams.wire import Event, Recommendation

__all__ = ["PERSONALIZED", "POPULAR", "BatchStats", "Engine"]


@dataclass
class BatchStats:
    """What one micro-batch did and how long each stage took (seconds, perf_counter)."""

    events: int = 0
    applied: int = 0
    duplicates: int = 0
    personalized: int = 0
    popular: int = 0
    candidates: int = 0
    apply_s: float = 0.0
    search_s: float = 0.0
    features_s: float = 0.0
    rerank_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.apply_s + self.search_s + self.features_s + self.rerank_s

    def stages(self) -> dict[str, float]:
        """Stage name → seconds, for per-stage latency metrics."""
        return {
            "apply": self.apply_s,
            "search": self.search_s,
            "features": self.features_s,
            "rerank": self.rerank_s,
        }


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Engine:
    """Turns micro-batches of events into recommendations (see the module doc)."""

    def __init__(
        self,
        index: Index,
        scorer: Reranker | BatchReranker | None,
        rule: UpdateRule,
        popular: Popular,
        config: EngineConfig,
        *,
        clock: Callable[[], int] = _wall_clock_ms,
        model_version: str | None = None,
        covis: CoVisitation | None = None,
    ) -> None:
        """``covis``: co-visitation statistics kept from the applied events, the source of
        the ``covis`` feature (0 without them); without a reranker, candidates are then
        ranked by retrieval score + ``config.covis_weight`` x co-visitation (see
        :mod:`.covis`). Builders pass them when :func:`~.ranking.uses_covis` says so."""
        self.index = index
        self.covis = covis
        self.scorer = scorer
        self.rule = rule
        self.popular = popular
        self.config = config
        self.clock = clock
        self.model_version = model_version or (scorer.model_version if scorer else "retrieval")
        self.last_batch_stats = BatchStats()
        self.stats = SharedStats([popular] if covis is None else [popular, covis])
        #: The delta the last batch committed to the shared statistics (publish it to share
        #: them across workers; see :mod:`.statistics`): what ``stats.commit`` applied.
        self.last_delta = StatsDelta()
        #: How many commits this engine has made: whether a batch committed, even one that
        #: then failed (its delta must still be published).
        self.commits = 0

    # --- the micro-batch ---------------------------------------------------------------
    def process(
        self,
        events: Sequence[Event],
        states: MutableMapping[str, UserState],
        *,
        moment: Moment = "after",
    ) -> list[Recommendation]:
        """Apply ``events`` in order and return exactly one recommendation per event.

        ``moment="after"`` (serving) recommends from each user's state right after the
        event; ``"before"`` from the state right before it (prequential evaluation: what the
        user was shown when they acted). ``states`` gets a (new or updated) state for every
        user of the batch. The shared statistics take the batch at one point (module doc).
        """
        ranker = self.ranker()
        applied = self._apply(events, states, moment)
        with self._reading(applied.delta, moment):
            features = ranker is not None and ranker.needs_features
            candidates = self._candidates(applied, features=features)
            return self._rank(candidates, ranker)

    def prepare(
        self,
        events: Sequence[Event],
        states: MutableMapping[str, UserState],
        *,
        moment: Moment = "after",
    ) -> list[CandidateSet]:
        """Apply ``events`` and return each one's candidates and features, unranked.

        With ``moment="before"`` this is what training logs: for each event, the candidates
        the engine would have served just before it (label them by what the user did).
        """
        applied = self._apply(events, states, moment)
        with self._reading(applied.delta, moment):
            return self._candidates(applied, features=True)

    def apply(self, events: Sequence[Event], states: MutableMapping[str, UserState]) -> int:
        """Apply events to the states and shared statistics only (warm-up); returns how many
        were newly applied."""
        applied = self._apply(events, states, None)
        self._commit(applied.delta)
        return len(applied.delta)

    def cold_recommendation(self, k: int) -> list[str]:
        """The first ``k`` items a never-seen user gets now (:meth:`recommend_cold`)."""
        return self.recommend_cold("", k).items

    def recommend_cold(self, user_id: str, k: int, exclude: Collection[str] = ()) -> Recommendation:
        """What a user with no recommendation yet gets now, minus ``exclude``: the
        recently-popular items still in the index, best first, scored by their decayed
        counts — the very pool and filter a cold user's event gets on the stream
        (:class:`~.retrieval.PopularSource`), so HTTP and Kafka cannot serve a cold user
        different items. Call it where the index is mutated (the worker's compute thread)."""
        source = PopularSource(self.popular, self.index)
        ids, counts = source.pick(source.pool(), set(exclude), (), k)
        return Recommendation(
            user_id=user_id,
            items=ids,
            scores=counts.tolist(),
            event_id=None,
            event_ts=None,
            emitted_ts=self.clock(),
            model_version=self.model_version,
            source=POPULAR,
        )

    def sources(self) -> list[tuple[CandidateSource, int]]:
        """The candidate sources in the order they fill a list, each with the length it
        fills lists to (:mod:`.retrieval`): ``candidates`` from the search, up to
        ``covis_candidates`` more co-visitation neighbours when the engine keeps
        co-visitation, and popular items for cold users and lists still short."""
        n = self.config.candidates
        sources: list[tuple[CandidateSource, int]] = [
            (AnnSource(self.index, self.rule.max_queries), n)
        ]
        if self.covis is not None and self.config.covis_candidates > 0:
            sources.append((CovisSource(self.covis, self.index), n + self.config.covis_candidates))
        sources.append((PopularSource(self.popular, self.index), n))
        return sources

    @property
    def max_candidates(self) -> int:
        """The longest candidate list the sources fill: what a consumer that pads or cuts
        lists (training's ranking groups) must hold, co-visitation's additions included."""
        return max(n for _, n in self.sources())

    def ranker(self) -> Ranker | None:
        """What ranks the personalized candidates now (:mod:`.ranking`; None: retrieval
        order): read per batch, since the evaluator swaps ``scorer``."""
        return ranker_of(
            self.scorer,
            self.covis,
            self.config.covis_weight,
            self.rule.action_weights,
            self.index.get_vectors,
        )

    def keep_covis(self, covis: CoVisitation) -> None:
        """Keep ``covis`` from now on (an engine built without): counted at every commit,
        read by the ``covis`` feature and ranker; for a reranker plugged in later."""
        self.covis = covis
        self.stats.statistics.append(covis)

    # --- live catalog ------------------------------------------------------------------
    def apply_item_upsert(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add or replace catalog items; they can be recommended from the next batch on."""
        self.index.upsert(ids, vectors)

    def apply_item_delete(self, ids: Sequence[str]) -> None:
        """Remove catalog items from retrieval and popularity; unknown ids are ignored, so a
        redelivered delete is harmless."""
        known = [i for i in dict.fromkeys(ids) if i in self.index]
        if known:
            self.index.delete(known)
        self.popular.drop(ids)

    # --- stages, timed into last_batch_stats -------------------------------------------
    def _apply(
        self, events: Sequence[Event], states: MutableMapping[str, UserState], moment: Moment | None
    ) -> Applied:
        stats = self.last_batch_stats = BatchStats(events=len(events))
        started = time.perf_counter()
        applied = apply_events(
            events,
            states,
            self.rule,
            self.config,
            self.index.get_vectors,
            dim=self.index.dim,
            window=None if self.covis is None else self.covis.window,
            moment=moment,
        )
        stats.applied = len(applied.delta)
        stats.duplicates = applied.duplicates
        stats.apply_s = time.perf_counter() - started
        return applied

    @contextmanager
    def _reading(self, delta: StatsDelta, moment: Moment) -> Iterator[None]:
        """The block that reads the shared statistics, with the batch's ``delta`` committed
        before it for serving's freshest counts (``popular_as_of="batch_end"``, ``moment=
        "after"``), after it otherwise: the one place a batch changes them."""
        fresh = moment == "after" and self.config.popular_as_of == "batch_end"
        if fresh:
            self._commit(delta)
        yield
        if not fresh:
            self._commit(delta)

    def _commit(self, delta: StatsDelta) -> None:
        started = time.perf_counter()
        self.last_delta = self.stats.commit(delta)
        self.commits += 1
        self.last_batch_stats.apply_s += time.perf_counter() - started

    def _candidates(self, applied: Applied, *, features: bool) -> list[CandidateSet]:
        stats = self.last_batch_stats
        started = time.perf_counter()
        lists = retrieve(applied.snapshots, self.sources(), with_vectors=features)
        searched_at = time.perf_counter()
        stats.search_s = searched_at - started
        out = (
            with_features(lists, self.index, self.popular, self.covis) if features else bare(lists)
        )
        stats.features_s = time.perf_counter() - searched_at
        stats.candidates = sum(len(c.ids) for c in out)
        stats.popular = sum(c.source == POPULAR for c in out)
        stats.personalized = len(out) - stats.popular
        return out

    def _rank(self, candidates: list[CandidateSet], ranker: Ranker | None) -> list[Recommendation]:
        started = time.perf_counter()
        recs = top_k(
            candidates,
            ranker,
            self.config.k,
            clock=self.clock,
            model_version=self.model_version,
        )
        self.last_batch_stats.rerank_s = time.perf_counter() - started
        return recs
