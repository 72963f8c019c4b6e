"""Item embeddings learned from the interaction log.

Retrieval builds a user's query from the vectors of the items they just touched
(a decayed, action-weighted sum), so what matters is that *items acted on one after
another* lie close together. Two learners are offered, both deterministic for a seed,
picked by next-item HR@10 on a time split (train on the first 80 % of the stream, query =
decayed sum of the user's recent item vectors, as the engine does, 3,000 held-out events):

=========================================  ============  ==============
method                                     MovieLens-1M  MovieLens-100k
=========================================  ============  ==============
``"als"`` (default) alpha 20, reg 0.1      0.168         0.151
``"cooc"`` shifted-PPMI SVD, window 5      0.120         0.160
=========================================  ============  ==============

* ``"als"`` — implicit-feedback ALS (Hu, Koren & Volinsky 2008) on the user × item matrix,
  confidence 1 + alpha · action weight (save above click). Exact per-row solves in numpy:
  ML-1M's 10 sweeps take about 9 s on one core, fast enough that a compiled library
  (``implicit``) is not needed for the 15-minute training budget.
* ``"cooc"`` — item2vec in closed form: windowed co-occurrence over each user's
  time-ordered sequence, positive PMI, truncated SVD (Levy & Goldberg 2014: skip-gram with
  negative sampling factorises this matrix). Slightly ahead on the sparse 100k set, clearly
  behind on 1M, whose figures count.

Vectors are L2-normalised: the index searches by inner product, and a query that sums
unit vectors weighs each recent item by its recency and action, not by its popularity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

METHODS = ("als", "cooc")


@dataclass(frozen=True)
class EmbeddingConfig:
    """How to learn item vectors; defaults are the ones measured best on MovieLens."""

    dim: int = 64
    method: str = "als"
    window: int = 5  # cooc: items up to this many steps apart in a sequence co-occur
    neg_shift: float = 0.0  # cooc: PMI shift log(k); 0 (plain PPMI) measured best
    als_iters: int = 10
    als_reg: float = 0.1
    als_alpha: float = 20.0
    seed: int = 0


def train_item_embeddings(
    sequences: Sequence[np.ndarray],
    weights: Sequence[np.ndarray],
    n_items: int,
    config: EmbeddingConfig,
) -> np.ndarray:
    """Learn one unit vector per item from users' time-ordered item sequences.

    ``sequences[u]`` holds item indices (0..n_items-1) in time order and ``weights[u]``
    the matching action weights (e.g. 1 for click, 2 for save). Items never seen get a
    zero vector. Returns float32 ``[n_items, dim]``.
    """
    if config.method not in METHODS:
        raise ValueError(f"unknown embedding method {config.method!r}; choose one of {METHODS}")
    if config.dim >= n_items:
        raise ValueError(f"embedding dim {config.dim} must be smaller than the {n_items} items")
    if config.method == "cooc":
        vectors = _cooc_svd(sequences, weights, n_items, config)
    else:
        vectors = _als(sequences, weights, n_items, config)
    return _normalise(vectors)


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(
        np.where(norms > 0, vectors / np.maximum(norms, 1e-12), 0.0), dtype=np.float32
    )


def _cooc_svd(
    sequences: Sequence[np.ndarray],
    weights: Sequence[np.ndarray],
    n_items: int,
    config: EmbeddingConfig,
) -> np.ndarray:
    """Shifted-PPMI of windowed co-occurrences, factorised by truncated SVD."""
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for seq, w in zip(sequences, weights, strict=True):
        for offset in range(1, min(config.window, len(seq) - 1) + 1):
            a, b = seq[:-offset], seq[offset:]
            pair_w = np.sqrt(w[:-offset] * w[offset:]) / offset  # nearer pairs count more
            rows += [a, b]
            cols += [b, a]
            vals += [pair_w, pair_w]
    if not rows:
        raise ValueError("no item co-occurs with another: sequences are too short to learn from")
    counts = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_items, n_items),
        dtype=np.float64,
    )
    counts.sum_duplicates()
    total = counts.sum()
    marginal = np.asarray(counts.sum(axis=1)).ravel()
    coo = counts.tocoo()
    pmi = np.log(coo.data * total / (marginal[coo.row] * marginal[coo.col])) - config.neg_shift
    keep = pmi > 0
    ppmi = sp.csr_matrix(
        (pmi[keep], (coo.row[keep], coo.col[keep])), shape=(n_items, n_items), dtype=np.float64
    )
    rng = np.random.default_rng(config.seed)
    v0 = rng.standard_normal(n_items)
    u, s, _ = svds(ppmi, k=config.dim, v0=v0, random_state=config.seed)
    return u * np.sqrt(s)[None, :]


def _als(
    sequences: Sequence[np.ndarray],
    weights: Sequence[np.ndarray],
    n_items: int,
    config: EmbeddingConfig,
) -> np.ndarray:
    """Implicit ALS with confidence 1 + alpha * weight; returns the item factors."""
    n_users = len(sequences)
    user_idx = np.concatenate([np.full(len(s), u) for u, s in enumerate(sequences)])
    r = sp.csr_matrix(
        (np.concatenate(weights).astype(np.float64), (user_idx, np.concatenate(sequences))),
        shape=(n_users, n_items),
    )
    r.sum_duplicates()
    rng = np.random.default_rng(config.seed)
    users = rng.standard_normal((n_users, config.dim)) * 0.01
    items = rng.standard_normal((n_items, config.dim)) * 0.01
    rt = r.T.tocsr()
    for _ in range(config.als_iters):
        users = _als_half_step(r, items, config)
        items = _als_half_step(rt, users, config)
    return items


def _als_half_step(r: sp.csr_matrix, fixed: np.ndarray, config: EmbeddingConfig) -> np.ndarray:
    """Solve every row's factors exactly given the other side (Hu et al. eq. 4)."""
    dim = fixed.shape[1]
    gram = fixed.T @ fixed + config.als_reg * np.eye(dim)
    out = np.zeros((r.shape[0], dim))
    for row in range(r.shape[0]):
        start, end = r.indptr[row], r.indptr[row + 1]
        if start == end:
            continue
        idx, conf = r.indices[start:end], config.als_alpha * r.data[start:end]
        y = fixed[idx]
        a = gram + (y.T * conf) @ y
        b = (y.T * (1.0 + conf)).sum(axis=1)
        out[row] = np.linalg.solve(a, b)
    return out
