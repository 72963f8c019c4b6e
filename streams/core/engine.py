"""The engine core: one micro-batch of events in, exactly one recommendation per event out.

Kafka-free on purpose: the Faust agent, the training-example logger and the prequential
evaluator all call :class:`Engine`, so what is trained on, evaluated and served is the same
code. Per micro-batch (DESIGN.md "The path of one event"):

1. **apply** — events in order; an already-applied event id is skipped (idempotence, see
   ``state.py``); each event moves its user's state (ring, seen items, counters, the update
   rule's vectors) and is staged into the batch's :class:`~.statistics.StatsDelta`. Each
   event takes a snapshot (:class:`~streamrec.streams.core.features.UserContext`) of its
   user's state right after it (or right before it, for training and prequential
   evaluation), so two events of one user in one batch get two different recommendations.
   The shared statistics (recently-popular counts, co-visitation, anything added later)
   change only when the delta is committed, through :class:`~.statistics.SharedStats`, at
   ONE point of the batch (:meth:`Engine._reading`): before retrieval for serving's freshest
   counts (:attr:`EngineConfig.popular_as_of` ``batch_end`` with ``moment="after"``),
   otherwise after the lists are ranked, so every list reads them as of the batch start
   and none sees an event after its own (no future, whatever the batch size).
2. **search** — ONE batched ``index.search`` over every personalized snapshot's queries
   (several per user for the multi-interest rule), with the user's seen items excluded by
   the index's over-fetch; the hits' vectors come back with them when features are needed.
   Cold users (fewer than ``cold_threshold`` actions on known items) get recently-popular
   items instead, minus seen and deleted ones.
3. **features** — one vectorised :func:`build_features` (one ``get_vectors`` call for the
   popular candidates and recent items); skipped by :meth:`Engine.process` when there is no
   reranker, since retrieval order needs none.
4. **rerank** — ONE reranker call over all personalized candidates of the batch (retrieval
   order when there is none); top-k. A reranker is either a feature scorer
   (``score(features [N, F]) -> [N]``, the student ``Scorer``) or a batch reranker
   (``score_batch(RerankBatch) -> [N]``) that also sees each row's user snapshot, candidate
   id and vector (a sequence model such as the teacher). Without a reranker and with
   co-visitation on (``covis``, :mod:`.covis`), the order is retrieval score +
   ``covis_weight`` x the user's scaled co-visitation with each candidate.

Stage timings of the last batch are in :attr:`Engine.last_batch_stats` for metrics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from streamrec.index import SearchResult
from streamrec.streams.core.config import EngineConfig
from streamrec.streams.core.covis import CoVisitation
from streamrec.streams.core.features import FEATURE_NAMES, UserContext, build_features
from streamrec.streams.core.popular import Popular
from streamrec.streams.core.rules import UpdateRule
from streamrec.streams.core.state import UserState
from streamrec.streams.core.statistics import SharedStats, StatsDelta, event_key
from streamrec.streams.wire import Event, Recommendation

PERSONALIZED = "personalized"
POPULAR = "popular"

Moment = Literal["after", "before"]


class Index(Protocol):
    """The part of ``CandidateIndex`` the engine uses."""

    dim: int

    def __contains__(self, item_id: object) -> bool: ...
    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[set[str]] | None = None,
        *,
        with_vectors: bool = False,
    ) -> SearchResult: ...
    def get_vectors(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]: ...
    def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> None: ...
    def delete(self, ids: Sequence[str]) -> None: ...


class Reranker(Protocol):
    """A feature scorer: the part of ``streamrec.models.scorer.Scorer`` the engine uses."""

    model_version: str

    def score(self, features: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class RerankBatch:
    """Everything a batch reranker may look at: the personalized candidates of one batch.

    Row ``r`` is candidate ``candidate_ids[r]`` (vector ``candidate_vectors[r]``, features
    ``features[r]`` in :data:`FEATURE_NAMES` order) for the user snapshot
    ``contexts[owner[r]]``, taken at ``events[owner[r]]``; the rows of snapshot ``b`` are
    ``offsets[b]:offsets[b + 1]``, in retrieval order. ``contexts[b].history`` is the user's
    recent actions ``(item, action, ts)`` oldest first; ``action_weights`` are the update
    rule's weights and ``vectors_of`` is the index's ``get_vectors`` (e.g. for the
    history's item vectors).
    """

    features: np.ndarray  # [N, F] float32
    owner: np.ndarray  # [N] int64
    offsets: np.ndarray  # [B + 1] int64
    contexts: list[UserContext]  # [B]
    events: list[Event]  # [B]
    candidate_ids: list[str]  # [N]
    candidate_vectors: np.ndarray  # [N, d] float32
    action_weights: Mapping[str, float]
    vectors_of: Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]]

    feature_names = FEATURE_NAMES


@runtime_checkable
class BatchReranker(Protocol):
    """A reranker that scores a whole :class:`RerankBatch` (one call per micro-batch)."""

    model_version: str

    def score_batch(self, batch: RerankBatch) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class VectorTable:
    """The vectors of a batch's event items, fetched in one ``get_vectors`` call."""

    rows: dict[str, int]
    vectors: np.ndarray  # [n, d] float32, zeros where not found
    found: np.ndarray  # [n] bool

    @classmethod
    def fetch(cls, source: Index, ids: Sequence[str]) -> VectorTable:
        """Fetch the distinct ``ids`` from the index in one call."""
        unique = list(dict.fromkeys(ids))
        vectors, found = source.get_vectors(unique)
        return cls(
            dict(zip(unique, range(len(unique)), strict=True)),
            np.asarray(vectors, dtype=np.float32),
            np.asarray(found, dtype=bool),
        )

    def vector(self, item_id: str) -> np.ndarray | None:
        """The item's vector, or None when the index does not hold it."""
        row = self.rows.get(item_id)
        return self.vectors[row] if row is not None and self.found[row] else None


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


@dataclass(frozen=True, slots=True)
class CandidateSet:
    """One event's candidates, in retrieval order, with their reranker features.

    ``scores`` are retrieval scores (personalized) or decayed popular counts (popular);
    ``applied`` is False when the event was a duplicate and left the state unchanged;
    ``context`` is the user snapshot the candidates were retrieved for and ``vectors`` the
    candidates' item vectors (``[len(ids), d]``).
    """

    event: Event
    source: str
    ids: list[str]
    scores: np.ndarray
    features: np.ndarray
    applied: bool
    context: UserContext | None = None
    vectors: np.ndarray | None = None


@dataclass
class _Snapshot:
    event: Event
    context: UserContext
    exclude: set[str]
    applied: bool
    ids: list[str] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    vectors: np.ndarray | None = None  # of ids[:len(vectors)] (the searched part)


class _Staged:
    """The columns of a batch's :class:`StatsDelta`, filled event by event."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.ts: list[int] = []
        self.weights: list[float] = []
        self.previous: list[tuple[str, ...]] = []
        self.keys: list[int] = []

    def add(self, event: Event, weight: float, previous: Sequence[str]) -> None:
        self.items.append(event.item_id)
        self.ts.append(event.ts)
        self.weights.append(weight)
        self.previous.append(tuple(previous))
        self.keys.append(event_key(event.user_id, event.event_id))

    def delta(self) -> StatsDelta:
        return StatsDelta(
            tuple(self.items),
            tuple(self.ts),
            tuple(self.weights),
            tuple(self.previous),
            tuple(self.keys),
        )


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
        """``covis``: co-visitation statistics kept from the applied events; without a
        reranker, candidates are then ranked by retrieval score + ``config.covis_weight`` x
        co-visitation (see :mod:`.covis`)."""
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
        snapshots, delta = self._apply(events, states, moment)
        with self._reading(delta, moment):
            candidate_sets = self._candidates(snapshots, with_features=self.scorer is not None)
            recs = self._rank(candidate_sets)
        return recs

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
        snapshots, delta = self._apply(events, states, moment)
        with self._reading(delta, moment):
            return self._candidates(snapshots, with_features=True)

    def apply(self, events: Sequence[Event], states: MutableMapping[str, UserState]) -> int:
        """Apply events to the states and shared statistics only (warm-up); returns how many
        were newly applied."""
        table = VectorTable.fetch(self.index, [e.item_id for e in events])
        touched: dict[str, UserState] = {}
        staged = _Staged()
        for event in events:
            state = touched.get(event.user_id) or self._state(states, event.user_id)
            touched[event.user_id] = state
            before = self._apply_one(state, event, table)
            if before is not None:
                staged.add(event, self.rule.weight(event.action, event.weight), before)
        states.update(touched)  # assignment is what a Faust table persists
        delta = staged.delta()
        self._commit(delta)
        return len(delta)

    def cold_recommendation(self, k: int) -> list[str]:
        """The first ``k`` items a never-seen user gets now (:meth:`recommend_cold`)."""
        return self.recommend_cold("", k).items

    def recommend_cold(self, user_id: str, k: int, exclude: Collection[str] = ()) -> Recommendation:
        """What a user with no recommendation yet gets now, minus ``exclude``: the
        recently-popular items still in the index, best first, scored by their decayed
        counts — the very pool and filter a cold user's event gets on the stream
        (:meth:`_retrieve`), so HTTP and Kafka cannot serve a cold user different items.
        Call it where the index is mutated (the worker's compute thread)."""
        ids, counts = _popular_for(self._cold_pool(), set(exclude), (), k)
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

    # --- stages ------------------------------------------------------------------------
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
        self.last_batch_stats.apply_s += time.perf_counter() - started

    def _candidates(self, snapshots: list[_Snapshot], *, with_features: bool) -> list[CandidateSet]:
        """Search and (when ``with_features``) build features; see the module doc."""
        stats = self.last_batch_stats
        started = time.perf_counter()
        self._retrieve(snapshots, stats, with_features)
        searched_at = time.perf_counter()
        stats.search_s = searched_at - started
        out = self._features(snapshots) if with_features else self._bare(snapshots)
        stats.features_s = time.perf_counter() - searched_at
        stats.candidates = sum(len(c.ids) for c in out)
        return out

    def _state(self, states: MutableMapping[str, UserState], user_id: str) -> UserState:
        state = states.get(user_id)
        if state is None:
            state = states[user_id] = UserState()
        return state

    def _apply_one(
        self, state: UserState, event: Event, table: VectorTable
    ) -> Sequence[str] | None:
        """Apply one event unless it was already applied (then None); returns the user's
        previous items when co-visitation is kept (else an empty tuple)."""
        if state.is_applied(event):
            return None
        cfg = self.config
        state.record(
            event,
            recent_size=cfg.recent_size,
            seen_size=cfg.seen_size,
            applied_ids=cfg.applied_ids,
        )
        weight = self.rule.weight(event.action, event.weight)
        vector = table.vector(event.item_id)
        if vector is not None:
            self.rule.update(state, vector, weight, event.ts)
        if self.covis is None:
            return ()
        window = self.covis.window
        return [item for item, _, _ in state.recent[-window - 1 : -1]]

    def _context(self, state: UserState) -> UserContext:
        return UserContext.of(
            state,
            self.rule,
            dim=self.index.dim,
            recent=self.config.feature_recent,
            cold_threshold=self.config.cold_threshold,
        )

    def _apply(
        self,
        events: Sequence[Event],
        states: MutableMapping[str, UserState],
        moment: Moment,
    ) -> tuple[list[_Snapshot], StatsDelta]:
        """Apply each event to its user's state, snapshotting the state at ``moment``, and
        stage the newly applied events as the batch's statistics delta (not committed)."""
        stats = self.last_batch_stats = BatchStats(events=len(events))
        started = time.perf_counter()
        table = VectorTable.fetch(self.index, [e.item_id for e in events])
        touched: dict[str, UserState] = {}
        snapshots = []
        staged = _Staged()
        for event in events:
            state = touched.get(event.user_id) or self._state(states, event.user_id)
            touched[event.user_id] = state
            before = (self._context(state), state.exclude) if moment == "before" else None
            previous = self._apply_one(state, event, table)
            applied = previous is not None
            if previous is not None:
                staged.add(event, self.rule.weight(event.action, event.weight), previous)
            context, exclude = before or (self._context(state), state.exclude)
            stats.applied += applied
            stats.duplicates += not applied
            snapshots.append(_Snapshot(event, context, exclude, applied))
        states.update(touched)  # assignment is what a Faust table persists
        stats.apply_s = time.perf_counter() - started
        return snapshots, staged.delta()

    def _retrieve(self, snapshots: list[_Snapshot], stats: BatchStats, with_vectors: bool) -> None:
        """One batched search for the personalized snapshots; popular for the cold ones."""
        n = self.config.candidates
        warm = [s for s in snapshots if not s.context.cold]
        if warm:
            m_max = self.rule.max_queries
            per_query = n if m_max == 1 else min(n, math.ceil(1.5 * n / m_max))
            queries = np.vstack([s.context.queries for s in warm])
            exclude = [s.exclude for s in warm for _ in s.context.queries]
            result = self.index.search(queries, per_query, exclude, with_vectors=with_vectors)
            row = 0
            for snap in warm:
                m = len(snap.context.queries)
                rows = slice(row, row + m)
                snap.ids, snap.scores, picked = _interleave(
                    result.ids[rows], result.scores[rows], snap.context.query_weights, n
                )
                if result.vectors is not None:
                    vectors = result.vectors[rows]
                    snap.vectors = (vectors[0] if m == 1 else np.concatenate(vectors))[picked]
                row += m
        pool: tuple[list[str], np.ndarray] | None = None
        for snap in snapshots:
            if snap.context.cold or len(snap.ids) < n:  # cold, tiny catalog or heavy exclusions
                pool = pool or self._cold_pool()
                ids, counts = _popular_for(pool, snap.exclude, snap.ids, n - len(snap.ids))
                if snap.context.cold:
                    snap.ids, snap.scores = ids, counts
                else:
                    snap.ids = snap.ids + ids
                    snap.scores = np.concatenate([snap.scores, np.zeros(len(ids), np.float32)])
        stats.personalized = len(warm)
        stats.popular = len(snapshots) - len(warm)

    def _cold_pool(self) -> tuple[list[str], np.ndarray]:
        """The recently-popular items still in the index, best first, with their counts."""
        ids, counts = self.popular.top()
        index = self.index
        keep = [i for i, item in enumerate(ids) if item in index]
        return [ids[i] for i in keep], np.asarray(counts, dtype=np.float32)[keep]

    def _bare(self, snapshots: list[_Snapshot]) -> list[CandidateSet]:
        """Candidate sets without features (retrieval order needs none)."""
        none = np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
        return [
            CandidateSet(
                s.event,
                POPULAR if s.context.cold else PERSONALIZED,
                s.ids,
                s.scores,
                none,
                s.applied,
                s.context,
            )
            for s in snapshots
        ]

    def _features(self, snapshots: list[_Snapshot]) -> list[CandidateSet]:
        """Every candidate's features in one :func:`build_features` call; the vectors of the
        searched candidates come from the search, the rest (popular candidates, the users'
        recent items) from one ``get_vectors`` call."""
        contexts = [s.context for s in snapshots]
        candidates = [s.ids for s in snapshots]
        searched = [0 if s.vectors is None else len(s.vectors) for s in snapshots]
        missing = [item for s, m in zip(snapshots, searched, strict=True) for item in s.ids[m:]]
        recent = [item for c in contexts for item in c.recent_items]
        fetched, found = self.index.get_vectors(missing + recent)  # one call for the batch
        parts: list[np.ndarray] = []
        at = 0
        for snap, m in zip(snapshots, searched, strict=True):
            if snap.vectors is not None and m:
                parts.append(snap.vectors)
            rest = len(snap.ids) - m
            if rest:
                parts.append(fetched[at : at + rest])
                at += rest
        dim = self.index.dim
        vectors = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
        flat = [item for ids in candidates for item in ids]
        features = build_features(
            contexts,
            candidates,
            vectors,
            fetched[len(missing) :],
            found[len(missing) :],
            self.popular.counts(flat),
        )
        out, start = [], 0
        for snap in snapshots:
            end = start + len(snap.ids)
            source = POPULAR if snap.context.cold else PERSONALIZED
            out.append(
                CandidateSet(
                    snap.event,
                    source,
                    snap.ids,
                    snap.scores,
                    features[start:end],
                    snap.applied,
                    snap.context,
                    vectors[start:end],
                )
            )
            start = end
        return out

    def _score(self, scored: list[CandidateSet]) -> np.ndarray:
        """One reranker call over the personalized candidate sets' rows, in order."""
        assert self.scorer is not None
        features = np.vstack([c.features for c in scored])
        if not isinstance(self.scorer, BatchReranker):
            return np.asarray(self.scorer.score(features))
        counts = np.array([len(c.ids) for c in scored], dtype=np.int64)
        batch = RerankBatch(
            features=features,
            owner=np.repeat(np.arange(len(scored)), counts),
            offsets=np.concatenate([[0], np.cumsum(counts)]),
            contexts=[c.context for c in scored if c.context is not None],
            events=[c.event for c in scored],
            candidate_ids=[item for c in scored for item in c.ids],
            candidate_vectors=np.vstack([c.vectors for c in scored if c.vectors is not None]),
            action_weights=self.rule.action_weights,
            vectors_of=self.index.get_vectors,
        )
        scores = np.asarray(self.scorer.score_batch(batch))
        if scores.shape != (len(features),):
            raise ValueError(f"score_batch gave shape {scores.shape} for {len(features)} rows")
        return scores

    def _covisited(self, scored: list[CandidateSet]) -> np.ndarray:
        """Retrieval score + weight x scaled co-visitation with the user's recent items."""
        assert self.covis is not None
        histories = [
            [item for item, _, _ in c.context.history] if c.context else [] for c in scored
        ]
        covis = self.covis.scores(histories, [c.ids for c in scored])
        retrieval = np.concatenate([c.scores for c in scored]).astype(np.float64)
        return retrieval + self.config.covis_weight * covis

    def _rank(self, candidate_sets: list[CandidateSet]) -> list[Recommendation]:
        """One reranker call over all personalized candidates; top-k per event."""
        started = time.perf_counter()
        k = self.config.k
        scored = [c for c in candidate_sets if c.source == PERSONALIZED and c.ids]
        reranked: dict[int, np.ndarray] = {}
        if scored and (self.scorer is not None or self.covis is not None):
            scores = self._score(scored) if self.scorer is not None else self._covisited(scored)
            start = 0
            for c in scored:
                reranked[id(c)] = scores[start : start + len(c.ids)]
                start += len(c.ids)
        emitted = self.clock()
        recs = []
        for c in candidate_sets:
            rescored = reranked.get(id(c))
            if rescored is None:
                order, scores = np.arange(min(k, len(c.ids))), c.scores
            else:
                order, scores = np.argsort(-rescored, kind="stable")[:k], rescored
            picked = order.tolist()
            top = scores[order].tolist()
            recs.append(
                Recommendation(
                    user_id=c.event.user_id,
                    items=[c.ids[i] for i in picked],
                    scores=top,
                    event_id=c.event.event_id,
                    event_ts=c.event.ts,
                    emitted_ts=emitted,
                    model_version=self.model_version,
                    source=c.source,
                )
            )
        self.last_batch_stats.rerank_s = time.perf_counter() - started
        return recs


def _popular_for(
    pool: tuple[list[str], np.ndarray], exclude: set[str], taken: Sequence[str], n: int
) -> tuple[list[str], np.ndarray]:
    """The first ``n`` items of the cold pool that the user has not seen and not been given."""
    skip = exclude.union(taken) if taken else exclude
    ids: list[str] = []
    picked: list[int] = []
    if n > 0:
        for i, item in enumerate(pool[0]):
            if item not in skip:
                ids.append(item)
                picked.append(i)
                if len(ids) == n:
                    break
    return ids, pool[1][picked]


def _interleave(
    id_lists: Sequence[list[str]],
    score_lists: Sequence[np.ndarray],
    weights: np.ndarray,
    n: int,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Merge per-query result lists by weighted round-robin, without duplicates, up to ``n``;
    also returns the positions picked in the lists' concatenation (to pick vectors alike).

    Position ``r`` of the list of a query with weight ``w`` gets the key ``(r + 0.5) / w``,
    and items are taken by ascending key (ties: the stronger query first): an interest with
    twice the weight fills twice the slots at every depth. One list passes through unchanged.
    """
    if len(id_lists) == 1:
        m = min(n, len(id_lists[0]))
        return id_lists[0][:m], np.asarray(score_lists[0][:m], dtype=np.float32), np.arange(m)
    lengths = [len(lst) for lst in id_lists]
    owner = np.repeat(np.arange(len(id_lists)), lengths)
    rank = np.concatenate([np.arange(length) for length in lengths])
    keys = (rank + 0.5) / np.maximum(np.asarray(weights, dtype=np.float64)[owner], 1e-12)
    order = np.lexsort((owner, keys))
    flat_ids = [item for lst in id_lists for item in lst]
    flat_scores = np.concatenate(score_lists)
    ids: list[str] = []
    picked: list[int] = []
    taken: set[str] = set()
    for i in order.tolist():
        item = flat_ids[i]
        if item not in taken:
            taken.add(item)
            ids.append(item)
            picked.append(i)
            if len(ids) == n:
                break
    rows = np.asarray(picked, dtype=np.int64)
    return ids, flat_scores[rows].astype(np.float32), rows
