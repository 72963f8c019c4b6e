"""Steps 3-4 of a micro-batch: features, one reranker call, top-k.

**Features** (:func:`with_features`): one vectorised :func:`~.features.build_features` over
every candidate of the batch; the searched candidates' vectors come from the search, the
rest (popular candidates, the users' recent items) from one ``get_vectors`` call, the
co-visitation feature from one ``CoVisitation.scores`` call (the engine keeps the
statistics whenever its reranker reads it: :func:`uses_covis`). Skipped
(:func:`bare`) when the ranking needs none.

**Rerank**: ONE :class:`Ranker` call over all personalized candidates of the batch; popular
lists keep their order. A ranker is one of

- :class:`FeatureRanker` — a feature scorer (``score(features [N, F]) -> [N]``, the
  student ``Scorer``: :class:`Reranker`);
- :class:`BatchRanker` — a batch reranker (``score_batch(RerankBatch) -> [N]``:
  :class:`BatchReranker`) that also sees each row's user snapshot, candidate id and vector
  (a sequence model such as the teacher);
- :class:`CovisRanker` — with no reranker and co-visitation on (:mod:`.covis`): retrieval
  score + ``covis_weight`` x the user's scaled co-visitation with each candidate;

or none (:func:`ranker_of` gives None): retrieval order. **Top-k** (:func:`top_k`): a
stable sort by score, so ties keep retrieval order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Protocol, runtime_checkable

import numpy as np

from streamrec.streams.core.covis import CoVisitation
from streamrec.streams.core.features import (
    COVIS_FEATURE,
    FEATURE_NAMES,
    UserContext,
    build_features,
)
from streamrec.streams.core.popular import Popular
from streamrec.streams.core.retrieval import PERSONALIZED, CandidateList, CandidateSet, Index
from streamrec.streams.wire import Event, Recommendation


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


class Ranker(Protocol):
    """What orders a batch's personalized candidates: one score per candidate, the sets'
    candidates flattened in order (all of set 0's, then set 1's, …); higher first."""

    #: Whether the sets must carry features and vectors (:func:`with_features`).
    needs_features: bool

    def scores(self, sets: Sequence[CandidateSet]) -> np.ndarray: ...


class FeatureRanker:
    """A feature scorer over the sets' feature rows, stacked into one call."""

    needs_features = True

    def __init__(self, scorer: Reranker) -> None:
        self.scorer = scorer

    def scores(self, sets: Sequence[CandidateSet]) -> np.ndarray:
        return np.asarray(self.scorer.score(np.vstack([c.features for c in sets])))


class BatchRanker:
    """A batch reranker over one :class:`RerankBatch` of the sets."""

    needs_features = True

    def __init__(
        self,
        reranker: BatchReranker,
        action_weights: Mapping[str, float],
        vectors_of: Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]],
    ) -> None:
        self.reranker = reranker
        self.action_weights = action_weights
        self.vectors_of = vectors_of

    def scores(self, sets: Sequence[CandidateSet]) -> np.ndarray:
        counts = np.array([len(c.ids) for c in sets], dtype=np.int64)
        batch = RerankBatch(
            features=np.vstack([c.features for c in sets]),
            owner=np.repeat(np.arange(len(sets)), counts),
            offsets=np.concatenate([[0], np.cumsum(counts)]),
            contexts=[c.context for c in sets if c.context is not None],
            events=[c.event for c in sets],
            candidate_ids=[item for c in sets for item in c.ids],
            candidate_vectors=np.vstack([c.vectors for c in sets if c.vectors is not None]),
            action_weights=self.action_weights,
            vectors_of=self.vectors_of,
        )
        scores = np.asarray(self.reranker.score_batch(batch))
        if scores.shape != (len(batch.features),):
            raise ValueError(
                f"score_batch gave shape {scores.shape} for {len(batch.features)} rows"
            )
        return scores


class CovisRanker:
    """Retrieval score + ``weight`` x scaled co-visitation with the user's recent items."""

    needs_features = False

    def __init__(self, covis: CoVisitation, weight: float) -> None:
        self.covis = covis
        self.weight = weight

    def scores(self, sets: Sequence[CandidateSet]) -> np.ndarray:
        covis = covis_scores(self.covis, [c.context for c in sets], [c.ids for c in sets])
        retrieval = np.concatenate([c.scores for c in sets]).astype(np.float64)
        return retrieval + self.weight * covis


def covis_scores(
    covis: CoVisitation,
    contexts: Sequence[UserContext | None],
    candidates: Sequence[Sequence[str]],
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Each candidate's scaled co-visitation with its user's recent items (flattened like
    ``candidates``): the one reading for the :class:`CovisRanker` and the feature.
    ``rows``: the flattened candidates' rows in ``covis.rows``, when looked up already."""
    histories = [c.history_items if c else [] for c in contexts]
    return covis.scores(histories, candidates, rows=rows)


def uses_covis(scorer: Reranker | BatchReranker | None, covis_weight: float) -> bool:
    """Whether an engine with this reranker and blend weight must keep co-visitation
    statistics: for the :class:`CovisRanker` (``covis_weight > 0``) or for a reranker that
    reads the :data:`COVIS_FEATURE` (its ``feature_names`` when it declares them, checked
    against :data:`FEATURE_NAMES` at load; else it gets FEATURE_NAMES rows). The one rule
    every engine builder follows."""
    if covis_weight > 0:
        return True
    return scorer is not None and COVIS_FEATURE in getattr(scorer, "feature_names", FEATURE_NAMES)


def ranker_of(
    scorer: Reranker | BatchReranker | None,
    covis: CoVisitation | None,
    covis_weight: float,
    action_weights: Mapping[str, float],
    vectors_of: Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]],
) -> Ranker | None:
    """The ranker for an engine's reranker and co-visitation; None: retrieval order."""
    if isinstance(scorer, BatchReranker):
        return BatchRanker(scorer, action_weights, vectors_of)
    if scorer is not None:
        return FeatureRanker(scorer)
    if covis is not None:
        return CovisRanker(covis, covis_weight)
    return None


def bare(lists: Sequence[CandidateList]) -> list[CandidateSet]:
    """Candidate sets without features (retrieval order needs none)."""
    none = np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
    return [
        CandidateSet(
            c.snapshot.event,
            c.source,
            c.ids,
            c.scores,
            none,
            c.snapshot.applied,
            c.snapshot.context,
        )
        for c in lists
    ]


def with_features(
    lists: Sequence[CandidateList],
    index: Index,
    popular: Popular,
    covis: CoVisitation | None = None,
) -> list[CandidateSet]:
    """Every candidate's features and vector, in one :func:`build_features` call and one
    ``get_vectors`` call for the batch (module doc); the co-visitation feature from one
    ``covis.scores`` call (0 without ``covis``). The candidates' item rows are looked up
    once for popularity and co-visitation when the two share a row map (:mod:`.rows`; the
    engine's builders make them share one)."""
    contexts = [c.snapshot.context for c in lists]
    candidates = [c.ids for c in lists]
    searched = [0 if c.vectors is None else len(c.vectors) for c in lists]
    missing = [item for c, m in zip(lists, searched, strict=True) for item in c.ids[m:]]
    recent = [item for ctx in contexts for item in ctx.recent_items]
    fetched, found = index.get_vectors(missing + recent)  # one call for the batch
    parts: list[np.ndarray] = []
    at = 0
    for lst, m in zip(lists, searched, strict=True):
        if lst.vectors is not None and m:
            parts.append(lst.vectors)
        rest = len(lst.ids) - m
        if rest:
            parts.append(fetched[at : at + rest])
            at += rest
    vectors = np.concatenate(parts) if parts else np.zeros((0, index.dim), np.float32)
    rows = popular.rows.rows(list(chain.from_iterable(candidates)))
    shared = covis is not None and covis.rows is popular.rows
    features = build_features(
        contexts,
        candidates,
        vectors,
        fetched[len(missing) :],
        found[len(missing) :],
        popular.counts_at(rows),
        None
        if covis is None
        else covis_scores(covis, contexts, candidates, rows if shared else None),
    )
    out, start = [], 0
    for lst in lists:
        end = start + len(lst.ids)
        out.append(
            CandidateSet(
                lst.snapshot.event,
                lst.source,
                lst.ids,
                lst.scores,
                features[start:end],
                lst.snapshot.applied,
                lst.snapshot.context,
                vectors[start:end],
            )
        )
        start = end
    return out


def top_k(
    sets: Sequence[CandidateSet],
    ranker: Ranker | None,
    k: int,
    *,
    clock: Callable[[], int],
    model_version: str,
) -> list[Recommendation]:
    """One recommendation per set: its top ``k`` by one ``ranker`` call over all the
    personalized sets with candidates (retrieval order without a ranker, and for the
    others), emitted at ``clock()`` once they are scored."""
    scored = [c for c in sets if c.source == PERSONALIZED and c.ids]
    reranked: dict[int, np.ndarray] = {}
    if scored and ranker is not None:
        scores = ranker.scores(scored)
        start = 0
        for c in scored:
            reranked[id(c)] = scores[start : start + len(c.ids)]
            start += len(c.ids)
    emitted_ts = clock()
    recs = []
    for c in sets:
        rescored = reranked.get(id(c))
        if rescored is None:
            order, scores = np.arange(min(k, len(c.ids))), c.scores
        else:
            order, scores = np.argsort(-rescored, kind="stable")[:k], rescored
        picked = order.tolist()
        recs.append(
            Recommendation(
                user_id=c.event.user_id,
                items=[c.ids[i] for i in picked],
                scores=scores[order].tolist(),
                event_id=c.event.event_id,
                event_ts=c.event.ts,
                emitted_ts=emitted_ts,
                model_version=model_version,
                source=c.source,
            )
        )
    return recs
