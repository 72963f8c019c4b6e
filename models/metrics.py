"""Offline ranking metrics over grouped candidates (one group per held-out event).

Relevance is binary: the item the user acted on next. A group whose next item was not
retrieved counts as a miss for every ranker, so rankers are compared on the same events
and retrieval's recall bounds them all.
"""

from __future__ import annotations

import numpy as np


def ranks_of_relevant(scores: np.ndarray, relevant: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """0-based rank of the first relevant candidate in each group by descending score
    (ties broken by candidate order, i.e. retrieval order); -1 when none is relevant."""
    s = np.where(mask, scores.astype(np.float64), -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")
    rel_sorted = np.take_along_axis(relevant & mask, order, axis=1)
    found = rel_sorted.any(axis=1)
    return np.where(found, rel_sorted.argmax(axis=1), -1)


def ndcg_at_k_per_group(
    scores: np.ndarray, relevant: np.ndarray, mask: np.ndarray, k: int = 10
) -> np.ndarray:
    """Each group's NDCG@k for a single relevant item (0 where it is not in the top k)."""
    ranks = ranks_of_relevant(scores, relevant, mask)
    hit = (ranks >= 0) & (ranks < k)
    return np.where(hit, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)


def ndcg_hr_at_k(
    scores: np.ndarray, relevant: np.ndarray, mask: np.ndarray, k: int = 10
) -> dict[str, float]:
    """Mean NDCG@k and HR@k for a single relevant item per group."""
    gain = ndcg_at_k_per_group(scores, relevant, mask, k)
    n = max(len(gain), 1)
    return {f"ndcg@{k}": float(gain.sum() / n), f"hr@{k}": float((gain > 0).sum() / n)}


def retrieval_order_scores(mask: np.ndarray) -> np.ndarray:
    """Scores that keep the candidates in the order retrieval returned them."""
    return np.broadcast_to(-np.arange(mask.shape[1], dtype=np.float32), mask.shape).copy()
