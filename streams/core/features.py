"""The reranker's features: one compact float32 vector per (user, candidate) pair.

The same :func:`build_features` runs at serving time and when training examples are logged
(the engine's ``prepare``), so there is no train/serve skew. Features depend only on the
user's state (via :class:`UserContext`), the catalog vectors and the popularity counts —
never on the event about to happen — so "right after event e" and "right before event e+1"
give the same features. Everything is computed for the whole micro-batch at once on padded
``[batch, candidates, …]`` arrays with numpy; no per-pair Python.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from streamrec.streams.core.rules import UpdateRule, unit
from streamrec.streams.core.state import UserState

#: Feature order of the vector :func:`build_features` returns; the scorer checks it.
FEATURE_NAMES: tuple[str, ...] = (
    "retrieval_score",  # max over the user's queries of query · item (inner product)
    "retrieval_rank_log",  # log1p of the candidate's position in the retrieval list
    "query_weight",  # weight of the user's query (interest) that scores the item highest
    "item_norm",  # norm of the item vector (a popularity proxy in learned embeddings)
    "recent_sim_max",  # max cosine of the item to the user's last actions
    "recent_sim_mean",  # mean cosine of the item to the user's last actions
    "last_sim",  # cosine of the item to the user's most recent item
    "save_sim_max",  # max cosine of the item to the user's recent saves (0 when none)
    "pop_log",  # log1p of the item's recently-popular (decayed) count
    "user_events_log",  # log1p of the user's applied actions
    "user_save_frac",  # share of saves among the user's actions
    "user_gap_log",  # log1p of seconds between the user's last two actions
    "user_span_log",  # log1p of seconds between the user's first and last action
    "user_interests",  # number of query vectors the user has (interests for `multi`)
    "cold",  # 1 when the user is served recently-popular items
)


class VectorSource(Protocol):
    """What the features need of the index: vectors by id (the ``CandidateIndex`` method)."""

    def get_vectors(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True, slots=True)
class VectorTable:
    """Item vectors fetched in one ``get_vectors`` call, looked up by id afterwards."""

    rows: dict[str, int]
    vectors: np.ndarray  # [n, d] float32, zeros where not found
    found: np.ndarray  # [n] bool

    @classmethod
    def fetch(cls, source: VectorSource, ids: Sequence[str]) -> VectorTable:
        """Fetch the distinct ``ids`` from the index in one call."""
        unique = list(dict.fromkeys(ids))
        vectors, found = source.get_vectors(unique)
        return cls(
            {item: i for i, item in enumerate(unique)},
            np.asarray(vectors, dtype=np.float32),
            np.asarray(found, dtype=bool),
        )

    def vector(self, item_id: str) -> np.ndarray | None:
        """The item's vector, or None when the index does not hold it."""
        row = self.rows.get(item_id)
        return self.vectors[row] if row is not None and self.found[row] else None


@dataclass(frozen=True, slots=True)
class UserContext:
    """A snapshot of what the features (and retrieval) need of one user's state."""

    queries: np.ndarray  # [m, d] unit float32, strongest first
    query_weights: np.ndarray  # [m] float32, summing to 1
    recent_items: tuple[str, ...]  # newest first
    recent_saves: tuple[bool, ...]
    n_events: int
    save_frac: float
    gap_s: float
    span_s: float
    cold: bool

    @classmethod
    def of(
        cls, state: UserState, rule: UpdateRule, *, recent: int, cold_threshold: int
    ) -> UserContext:
        """Snapshot ``state``; later updates to the state do not change the snapshot."""
        queries, weights = rule.queries(state)
        last = state.recent[::-1][:recent]
        return cls(
            queries=queries,
            query_weights=weights,
            recent_items=tuple(item for item, _, _ in last),
            recent_saves=tuple(action == "save" for _, action, _ in last),
            n_events=state.n_events,
            save_frac=state.n_saves / state.n_events if state.n_events else 0.0,
            gap_s=max(state.last_ts - state.prev_ts, 0) / 1000.0 if state.prev_ts >= 0 else 0.0,
            span_s=max(state.last_ts - state.first_ts, 0) / 1000.0 if state.first_ts >= 0 else 0.0,
            cold=state.n_known < cold_threshold or len(queries) == 0,
        )


def _gather(table: VectorTable, lists: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Padded ``[B, L, d]`` vectors and ``[B, L]`` validity mask for lists of item ids."""
    width = max((len(ids) for ids in lists), default=0)
    rows = np.full((len(lists), width), -1, dtype=np.int64)
    for b, ids in enumerate(lists):
        rows[b, : len(ids)] = [table.rows.get(i, -1) for i in ids]
    valid = rows >= 0
    valid[valid] = table.found[rows[valid]]
    dim = table.vectors.shape[1] if table.vectors.ndim == 2 else 0
    out = np.zeros((len(lists), width, dim), dtype=np.float32)
    out[valid] = table.vectors[rows[valid]]
    return out, valid


def _masked_max(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Max over the last axis where ``mask`` holds, 0 where nothing does."""
    out = np.where(mask, values, -np.inf).max(axis=-1, initial=-np.inf)
    return np.where(np.isfinite(out), out, 0.0)


def build_features(
    users: Sequence[UserContext],
    candidates: Sequence[Sequence[str]],
    table: VectorTable,
    popularity: np.ndarray,
) -> np.ndarray:
    """Features of every (user, candidate) pair, ``[sum(len(c)), len(FEATURE_NAMES)]`` float32.

    Rows follow ``candidates`` flattened in order (all of user 0's, then user 1's, …).
    ``table`` must hold the candidates' and the users' recent items' vectors;
    ``popularity`` is the decayed count of each flattened candidate.
    """
    total = sum(len(c) for c in candidates)
    if total == 0:
        return np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
    batch = len(users)
    cand, _ = _gather(table, candidates)  # [B, N, d]
    cand_unit = unit(cand)
    width = cand.shape[1]
    dim = cand.shape[2]

    # Retrieval score: best query per candidate, and that query's weight.
    n_queries = max(len(u.queries) for u in users)
    queries = np.zeros((batch, max(n_queries, 1), dim), dtype=np.float32)
    query_weights = np.zeros((batch, max(n_queries, 1)), dtype=np.float32)
    for b, user in enumerate(users):
        if len(user.queries):
            queries[b, : len(user.queries)] = user.queries
            query_weights[b, : len(user.queries)] = user.query_weights
    query_mask = query_weights > 0
    dots = cand @ queries.transpose(0, 2, 1)  # [B, N, M]
    masked_dots = np.where(query_mask[:, None, :], dots, -np.inf)
    best = masked_dots.argmax(axis=-1)  # [B, N]
    has_query = query_mask.any(axis=-1)[:, None]
    retrieval_score = np.where(has_query, np.take_along_axis(dots, best[..., None], -1)[..., 0], 0)
    best_weight = np.where(has_query, np.take_along_axis(query_weights, best, axis=1), 0.0)

    # Similarity to the user's last actions.
    recent, recent_mask = _gather(table, [u.recent_items for u in users])  # [B, R, d]
    saves = np.zeros(recent_mask.shape, dtype=bool)
    for b, user in enumerate(users):
        saves[b, : len(user.recent_saves)] = user.recent_saves
    sims = cand_unit @ unit(recent).transpose(0, 2, 1)  # [B, N, R]
    mask = np.broadcast_to(recent_mask[:, None, :], sims.shape)
    count = recent_mask.sum(axis=-1)[:, None]
    recent_max = _masked_max(sims, mask)
    recent_mean = np.where(mask, sims, 0.0).sum(axis=-1) / np.maximum(count, 1)
    last_sim = sims[..., 0] * recent_mask[:, None, 0] if sims.shape[-1] else np.zeros_like(count)
    save_max = _masked_max(sims, mask & saves[:, None, :])

    # Per-user scalars, broadcast over candidates.
    scalars = np.array(
        [
            [
                math.log1p(u.n_events),
                u.save_frac,
                math.log1p(u.gap_s),
                math.log1p(u.span_s),
                float(len(u.queries)),
                float(u.cold),
            ]
            for u in users
        ],
        dtype=np.float32,
    )

    feats = np.zeros((batch, width, len(FEATURE_NAMES)), dtype=np.float32)
    feats[..., 0] = retrieval_score
    feats[..., 1] = np.log1p(np.arange(width, dtype=np.float32))[None, :]
    feats[..., 2] = best_weight
    feats[..., 3] = np.linalg.norm(cand, axis=-1)
    feats[..., 4] = recent_max
    feats[..., 5] = recent_mean
    feats[..., 6] = last_sim
    feats[..., 7] = save_max
    feats[..., 9:] = scalars[:, None, :]
    rows = np.zeros((batch, width), dtype=bool)
    for b, ids in enumerate(candidates):
        rows[b, : len(ids)] = True
    out = feats[rows]
    out[:, 8] = np.log1p(np.asarray(popularity, dtype=np.float64)).astype(np.float32)
    return out
