"""The reranker's features: one compact float32 vector per (user, candidate) pair.

The same :func:`build_features` runs at serving time and when training examples are logged
(the engine's ``prepare``), so there is no train/serve skew. Features depend only on the
user's state (via :class:`UserContext`), the catalog vectors, the popularity counts and
the co-visitation statistics (:mod:`.covis`, read as of the batch start like popularity) —
never on the event about to happen — so "right after event e" and "right before event e+1"
give the same features. Everything is computed for the whole micro-batch at once on padded
``[batch, candidates, …]`` arrays with numpy; no per-pair Python.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamrec.streams.core.rules import UpdateRule, unit
from streamrec.streams.core.state import UserState

#: The co-visitation feature: an engine whose reranker reads it keeps co-visitation
#: statistics whatever ``covis_weight`` (``ranking.uses_covis``).
COVIS_FEATURE = "covis"
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
    COVIS_FEATURE,  # the user's scaled [0, 1] co-visitation with the item (0 without statistics)
    "user_events_log",  # log1p of the user's applied actions
    "user_save_frac",  # share of saves among the user's actions
    "user_gap_log",  # log1p of seconds between the user's last two actions
    "user_span_log",  # log1p of seconds between the user's first and last action
    "user_interests",  # number of query vectors the user has (interests for `multi`)
    "cold",  # 1 when the user is served recently-popular items
)


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
    history: tuple[
        tuple[str, str, int], ...
    ] = ()  # the recent ring (item, action, ts), oldest first

    @property
    def history_items(self) -> list[str]:
        """The recent ring's items, oldest first: what co-visitation scores by."""
        return [item for item, _, _ in self.history]

    @classmethod
    def of(
        cls, state: UserState, rule: UpdateRule, *, dim: int, recent: int, cold_threshold: int
    ) -> UserContext:
        """Snapshot ``state`` for an index of dimension ``dim``; later updates to the state
        do not change the snapshot."""
        queries, weights = rule.queries(state, dim)
        last = state.recent[: -recent - 1 : -1]  # the newest `recent`, newest first
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
            history=tuple(state.recent),
        )


def _padded(flat: np.ndarray, counts: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``flat`` ([sum(counts), …], grouped by owner) as ``[B, width, …]`` plus the
    ``[B, width]`` mask of real rows."""
    mask: np.ndarray = np.arange(width)[None, :] < counts[:, None]
    if len(flat) == len(counts) * width:  # every owner has ``width`` rows: a free reshape
        return flat.reshape(len(counts), width, *flat.shape[1:]), mask
    out = np.zeros((len(counts), width, *flat.shape[1:]), dtype=flat.dtype)
    out[mask] = flat
    return out, mask


def _masked_max(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``[B, R, N]`` values, ``[B, R]`` mask: the max over R where the mask holds, else 0."""
    bias = np.where(mask, 0.0, -np.inf).astype(values.dtype)[..., None]
    out = (values + bias).max(axis=1)
    return np.where(np.any(mask, axis=1)[:, None], out, 0.0)


def build_features(
    users: Sequence[UserContext],
    candidates: Sequence[Sequence[str]],
    candidate_vectors: np.ndarray,
    recent_vectors: np.ndarray,
    recent_found: np.ndarray,
    popularity: np.ndarray,
    covis: np.ndarray | None = None,
) -> np.ndarray:
    """Features of every (user, candidate) pair, ``[sum(len(c)), len(FEATURE_NAMES)]`` float32.

    Rows follow ``candidates`` flattened in order (all of user 0's, then user 1's, …), as do
    ``candidate_vectors`` (``[T, d]``, zeros for unknown items) and ``popularity`` (decayed
    counts). ``recent_vectors``/``recent_found`` hold the vectors of every user's
    ``recent_items`` flattened the same way, and ``covis`` (``[T]``, from
    ``CoVisitation.scores``; None: an engine without co-visitation, all 0). One padded
    ``[B, M+R, d] @ [B, d, N]`` product gives every candidate's inner product with its
    user's M queries and R unit recent-item vectors at once (the latter divided by the
    item's norm give cosines).
    """
    counts = np.array([len(c) for c in candidates], dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
    cand = np.asarray(candidate_vectors, dtype=np.float32)
    dim = cand.shape[1]
    norms = np.sqrt(np.einsum("td,td->t", cand, cand))

    # The user side: M unit queries then R unit recent-item vectors per user.
    n_queries = max(max(len(u.queries) for u in users), 1)
    n_recent = max(max(len(u.recent_items) for u in users), 1)
    keys = np.zeros((len(users), n_queries + n_recent, dim), dtype=np.float32)
    query_weights = np.zeros((len(users), n_queries), dtype=np.float32)
    saves = np.zeros((len(users), n_recent), dtype=bool)
    for b, user in enumerate(users):
        if len(user.queries):
            keys[b, : len(user.queries)] = user.queries
            query_weights[b, : len(user.queries)] = user.query_weights
        saves[b, : len(user.recent_saves)] = user.recent_saves
    recent_counts = np.array([len(u.recent_items) for u in users], dtype=np.int64)
    recent, recent_mask = _padded(
        unit(np.asarray(recent_vectors, np.float32)), recent_counts, n_recent
    )
    recent_mask[recent_mask] = np.asarray(recent_found, dtype=bool)
    keys[:, n_queries:] = recent

    width = int(counts.max())
    padded, cand_mask = _padded(cand, counts, width)
    # [B, M+R, N]: reductions over the user's keys then run across contiguous rows of N.
    products = keys @ padded.transpose(0, 2, 1)
    padded_norms = _padded(norms, counts, width)[0]
    inv_norms = 1.0 / np.maximum(padded_norms, 1e-12)

    # Retrieval score: the best query's inner product with the item, and that query's weight.
    has_query: np.ndarray = query_weights > 0
    no_query_bias = np.where(has_query, 0.0, -np.inf).astype(np.float32)
    dots = products[:, :n_queries] + no_query_bias[..., None]
    best = dots.argmax(axis=1)  # [B, N]
    any_query = np.any(has_query, axis=1)[:, None]
    best_dot = np.take_along_axis(dots, best[:, None, :], axis=1)[:, 0]
    best_weight = np.take_along_axis(query_weights, best, axis=1)

    # Cosine to the user's last actions (newest first); missing ones have zero keys.
    cosines = products[:, n_queries:] * inv_norms[:, None, :]  # [B, R, N]
    n_seen = recent_mask.sum(axis=1)[:, None]
    save_mask = recent_mask & saves

    # Every column written straight into one [B, N, F] grid (no stacked temporaries); its
    # real rows are the output, a free reshape when every user has ``width`` candidates.
    grid = np.empty((len(users), width, len(FEATURE_NAMES)), dtype=np.float32)
    grid[..., 0] = np.where(any_query, best_dot, 0.0)
    grid[..., 1] = np.log1p(np.arange(width, dtype=np.float32))
    grid[..., 2] = np.where(any_query, best_weight, 0.0)
    grid[..., 3] = padded_norms
    grid[..., 4] = _masked_max(cosines, recent_mask)
    grid[..., 5] = cosines.sum(axis=1) / np.maximum(n_seen, 1)
    grid[..., 6] = cosines[:, 0]
    grid[..., 7] = _masked_max(cosines, save_mask) if save_mask.any() else 0.0
    grid[..., 8] = _padded(np.log1p(np.asarray(popularity, dtype=np.float64)), counts, width)[0]
    grid[..., 9] = 0.0 if covis is None else _padded(np.asarray(covis), counts, width)[0]
    grid[..., 10:] = np.array(
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
    )[:, None, :]
    out: np.ndarray = grid.reshape(total, -1) if total == grid.shape[0] * width else grid[cand_mask]
    return out
