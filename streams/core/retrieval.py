"""Step 2 of a micro-batch: each snapshot's candidates, from candidate sources in turn.

A :class:`CandidateSource` adds candidates to the lists of a whole batch at once. The
engine runs its sources in order, each filling the lists it serves up to its own length
(:func:`retrieve` takes ``(source, length)`` pairs), so the sources' candidates are merged
into one list per event:

1. :class:`AnnSource` — ONE batched ``index.search`` over every warm snapshot's queries
   (several per user for the multi-interest rule, their results merged by
   :func:`interleave`), the user's excluded items removed by the index's over-fetch; the
   hits' vectors come back with them when features need them.
2. :class:`CovisSource` — the strongest co-visitation neighbours of the user's recent
   items (:meth:`~.covis.CoVisitation.strongest`) that the search did not find: the items
   people go on to next, which embedding similarity misses; appended after the search's,
   scored on its scale (the best query's retrieval score), so a list reads as one ranking.
3. :class:`PopularSource` — the recently-popular items still in the index, best first
   (:meth:`PopularSource.pool`), minus excluded ones and those already in the list: all a
   cold user gets (fewer than ``cold_threshold`` actions on known items), and the fill of
   a warm list that came up short (tiny catalog, heavy exclusions).

A list belongs to the first source that :meth:`~CandidateSource.serves` its user (its
``source``, what the recommendation says it is); its scores are that source's (retrieval
scores, decayed popular counts); candidates a later source adds score 0 unless that source
scores them on the leading one's scale (the co-visitation source for the search's lists).
Which source added a candidate stays visible to the reranker through its position
(``retrieval_rank_log``) and its co-visitation (``covis``) feature.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from streamrec.index import SearchResult
from streamrec.streams.core.covis import CoVisitation
from streamrec.streams.core.features import UserContext
from streamrec.streams.core.popular import Popular
from streamrec.streams.core.updates import Snapshot
from streamrec.streams.wire import Event

PERSONALIZED = "personalized"
COVIS = "covis"
POPULAR = "popular"


class Index(Protocol):
    """The part of ``CandidateIndex`` the engine uses."""

    dim: int
    #: ``ip`` (search scores are inner products) or ``l2`` (negative squared distances).
    metric: str

    def __contains__(self, item_id: object) -> bool: ...
    def live_ids(self) -> Collection[str]: ...
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


@dataclass(eq=False)
class CandidateList:
    """One snapshot's candidates as the sources fill them, in retrieval order.

    ``vectors`` are those of ``ids[:len(vectors)]`` when the leading source returned them
    (the rest are fetched with the features); ``source`` is the name of the list's leading
    source (empty until one serves it).
    """

    snapshot: Snapshot
    source: str = ""
    ids: list[str] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    vectors: np.ndarray | None = None

    def add(
        self,
        source: str,
        ids: list[str],
        scores: np.ndarray,
        *,
        vectors: np.ndarray | None = None,
        on_scale: bool = False,
    ) -> None:
        """Append a source's candidates: with their scores when it leads the list or scores
        them on the leader's scale (``on_scale``), else scored 0. Their ``vectors`` are kept
        while the list's vectors cover all of its candidates."""
        if not self.source:
            self.source = source
            self.ids, self.scores = ids, np.asarray(scores, dtype=np.float32)
            self.vectors = vectors
        elif ids:
            covered = self.vectors is not None and len(self.vectors) == len(self.ids)
            self.ids = self.ids + ids
            added = np.asarray(scores, np.float32) if on_scale else np.zeros(len(ids), np.float32)
            self.scores = np.concatenate([self.scores, added])
            if covered and vectors is not None and self.vectors is not None:
                self.vectors = np.concatenate([self.vectors, vectors])


@dataclass(frozen=True, slots=True)
class CandidateSet:
    """One event's candidates, in retrieval order, with their reranker features.

    ``scores`` are retrieval scores (personalized) or decayed popular counts (popular);
    ``applied`` is False when the event was a duplicate and left the state unchanged;
    ``context`` is the user snapshot the candidates were retrieved for and ``vectors`` the
    candidates' item vectors (``[len(ids), d]``; None without features).
    """

    event: Event
    source: str
    ids: list[str]
    scores: np.ndarray
    features: np.ndarray
    applied: bool
    context: UserContext | None = None
    vectors: np.ndarray | None = None


class CandidateSource(Protocol):
    """Adds candidates to a batch's lists (see the module doc)."""

    #: The ``source`` a list it leads is labelled with.
    name: str

    def serves(self, context: UserContext) -> bool:
        """Whether this source may give ``context``'s user candidates at all."""
        ...

    def fill(self, lists: Sequence[CandidateList], n: int, *, with_vectors: bool) -> None:
        """Add up to ``n - len(lst.ids)`` new candidates to each list it serves: none the
        user excludes, none already in the list, none outside the index; in one go for the
        whole batch (with the added candidates' vectors when ``with_vectors``)."""
        ...


class AnnSource:
    """The index's nearest neighbours of the users' queries (one search per batch); it
    leads the lists it fills (a list another source leads gets none of its candidates)."""

    name = PERSONALIZED

    def __init__(self, index: Index, max_queries: int) -> None:
        """``max_queries``: the most queries one user has (the update rule's)."""
        self.index = index
        self.max_queries = max_queries

    def serves(self, context: UserContext) -> bool:
        return not context.cold

    def fill(self, lists: Sequence[CandidateList], n: int, *, with_vectors: bool) -> None:
        served = [c for c in lists if not c.source and self.serves(c.snapshot.context)]
        if not served:
            return
        m_max = self.max_queries
        per_query = n if m_max == 1 else min(n, math.ceil(1.5 * n / m_max))
        queries = np.vstack([c.snapshot.context.queries for c in served])
        exclude = [c.snapshot.exclude for c in served for _ in c.snapshot.context.queries]
        result = self.index.search(queries, per_query, exclude, with_vectors=with_vectors)
        row = 0
        for lst in served:
            m = len(lst.snapshot.context.queries)
            rows = slice(row, row + m)
            ids, scores, picked = interleave(
                result.ids[rows], result.scores[rows], lst.snapshot.context.query_weights, n
            )
            vectors = None
            if result.vectors is not None:
                hits = result.vectors[rows]
                vectors = (hits[0] if m == 1 else np.concatenate(hits))[picked]
            lst.add(self.name, ids, scores, vectors=vectors)
            row += m


class CovisSource:
    """The strongest co-visitation neighbours of the user's recent items, best first,
    scored like the search's hits (the best query's inner product, or negative squared
    distance for an ``l2`` index) so a list it extends stays one ranking by retrieval
    score; its own strength is the ``covis`` feature."""

    name = COVIS

    def __init__(self, covis: CoVisitation, index: Index) -> None:
        self.covis = covis
        self.index = index

    def serves(self, context: UserContext) -> bool:
        return not context.cold

    def fill(self, lists: Sequence[CandidateList], n: int, *, with_vectors: bool) -> None:
        served = [c for c in lists if self.serves(c.snapshot.context)]
        if not served:
            return
        want = max(n - min(len(c.ids) for c in served), 0)
        picks = self.covis.strongest(
            [c.snapshot.context.history_items for c in served],
            want,
            [(c.snapshot.exclude, set(c.ids)) for c in served],
            self.index.live_ids(),
        )
        adds = [
            found[: max(n - len(lst.ids), 0)] for lst, (found, _) in zip(served, picks, strict=True)
        ]
        fetched, _ = self.index.get_vectors([item for added in adds for item in added])
        at = 0
        for lst, added in zip(served, adds, strict=True):
            vectors = fetched[at : at + len(added)]
            at += len(added)
            scores = _retrieval_scores(lst.snapshot.context, vectors, self.index.metric)
            lst.add(
                self.name,
                added,
                scores,
                vectors=vectors if with_vectors else None,
                on_scale=lst.source == PERSONALIZED,
            )


def _retrieval_scores(context: UserContext, vectors: np.ndarray, metric: str) -> np.ndarray:
    """What the index's search would score ``vectors`` for this user: the best of the
    user's queries (inner product for ``ip``, negative squared distance for ``l2``)."""
    queries = context.queries[context.query_weights > 0]
    if not len(vectors) or not len(queries):
        return np.zeros(len(vectors), dtype=np.float32)
    dots = vectors @ queries.T  # [n, m]
    if metric == "l2":
        dots = 2 * dots - (vectors * vectors).sum(1)[:, None] - (queries * queries).sum(1)
    return np.asarray(dots.max(axis=1), dtype=np.float32)


class PopularSource:
    """The recently-popular items still in the index, best first, by decayed count."""

    name = POPULAR

    def __init__(self, popular: Popular, index: Index) -> None:
        self.popular = popular
        self.index = index

    def serves(self, context: UserContext) -> bool:
        return True

    def fill(self, lists: Sequence[CandidateList], n: int, *, with_vectors: bool) -> None:
        pool: tuple[list[str], np.ndarray] | None = None
        for lst in lists:
            if len(lst.ids) < n or not lst.source:
                pool = pool or self.pool()
                ids, counts = self.pick(pool, lst.snapshot.exclude, lst.ids, n - len(lst.ids))
                lst.add(self.name, ids, counts)

    def pool(self) -> tuple[list[str], np.ndarray]:
        """The recently-popular items still in the index, best first, with their counts."""
        ids, counts = self.popular.top()
        index = self.index
        keep = [i for i, item in enumerate(ids) if item in index]
        return [ids[i] for i in keep], np.asarray(counts, dtype=np.float32)[keep]

    @staticmethod
    def pick(
        pool: tuple[list[str], np.ndarray], exclude: Collection[str], taken: Sequence[str], n: int
    ) -> tuple[list[str], np.ndarray]:
        """The first ``n`` items of ``pool`` neither excluded nor already ``taken``."""
        skip = set(exclude).union(taken) if taken else exclude
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


def retrieve(
    snapshots: Sequence[Snapshot],
    sources: Sequence[tuple[CandidateSource, int]],
    *,
    with_vectors: bool,
) -> list[CandidateList]:
    """Every snapshot's list from ``sources`` in turn, each ``(source, n)`` filling the
    lists it serves up to ``n`` candidates (see the module doc)."""
    lists = [CandidateList(s) for s in snapshots]
    for source, n in sources:
        source.fill(lists, n, with_vectors=with_vectors)
    return lists


def interleave(
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
