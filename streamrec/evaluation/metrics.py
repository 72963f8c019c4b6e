"""Ranking metrics of a prequential replay, computed from one number per event: the rank.

Each scored event has one target (the item the user interacts with now) and one list (the
recommendations the user had just before). Every metric is the mean over events of a
per-event *gain* that depends only on the target's 0-based rank in that list (``-1`` when
absent), so the bootstrap can resample per-user sums of the very same gains.
"""

from __future__ import annotations

import re

import numpy as np

#: Rank of a target that is not in the list.
MISS = -1

_METRIC = re.compile(r"^(HR|NDCG)@(\d+)$|^MRR$")


def parse_metric(name: str) -> tuple[str, int | None]:
    """Split ``HR@10`` into ``("HR", 10)``; ``MRR`` has no cut-off (the whole list counts)."""
    match = _METRIC.match(name)
    if match is None:
        raise ValueError(f"unknown metric {name!r}: use HR@k, NDCG@k or MRR")
    if name == "MRR":
        return "MRR", None
    return match.group(1), int(match.group(2))


def gains(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Per-event gain of ``metric`` (HR@k: hit or not; NDCG@k: 1/log2(rank+2) inside the
    cut-off, since there is one relevant item its ideal DCG is 1; MRR: 1/(rank+1))."""
    kind, k = parse_metric(metric)
    ranks = np.asarray(ranks)
    found = ranks >= 0
    if kind == "MRR":
        return np.where(found, 1.0 / (np.maximum(ranks, 0) + 1.0), 0.0)
    inside = found & (ranks < k)
    if kind == "HR":
        return inside.astype(np.float64)
    return np.where(inside, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)


def mean_metric(ranks: np.ndarray, metric: str) -> float:
    """The metric over all events (0 for no events)."""
    return float(gains(ranks, metric).mean()) if len(ranks) else 0.0


def hr_curve(ranks: np.ndarray, max_k: int) -> np.ndarray:
    """HR@k for k = 1..max_k in one pass (index k-1)."""
    ranks = np.asarray(ranks)
    if not len(ranks):
        return np.zeros(max_k)
    hits = np.bincount(ranks[(ranks >= 0) & (ranks < max_k)], minlength=max_k)
    return np.cumsum(hits) / len(ranks)


def sliding(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` events (shorter at the start), for over-the-stream plots."""
    values = np.asarray(values, dtype=np.float64)
    csum = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (csum[idx] - csum[lo]) / (idx - lo)


def coverage(lists_items: set[int], catalog_size: int) -> float:
    """Catalog coverage: share of the catalog that appeared in any scored top-k list."""
    return len(lists_items) / catalog_size if catalog_size else 0.0
