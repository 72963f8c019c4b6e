"""A seeded, clustered synthetic catalog for index tests and benchmarks.

Real item embeddings are clustered (genres, styles, topics), and ANN recall on uniform
random vectors says little about recall on them, so the benchmark and the recall tests use
a Gaussian mixture on the unit sphere: ~sqrt(n) topic centres with Zipf-sized topics, and
queries that sit near a random item, like a user embedding near what they interacted with.
"""

from __future__ import annotations

import numpy as np

CHUNK = 262_144  # rows generated at a time, to keep float64 temporaries small


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered_catalog(
    n: int, dim: int, *, seed: int = 0, clusters: int | None = None, spread: float = 0.6
) -> tuple[list[str], np.ndarray]:
    """``n`` ids (``item-<i>``) and unit vectors drawn around ``clusters`` topic centres.

    ``spread`` is the noise norm relative to the unit centre, so topics overlap somewhat.
    """
    rng = np.random.default_rng(seed)
    c = clusters or max(4, int(np.sqrt(n)))
    centres = _unit(rng.standard_normal((c, dim)))
    sizes = 1.0 / np.arange(1, c + 1) ** 0.8  # Zipf-like topic sizes
    topic = rng.choice(c, size=n, p=sizes / sizes.sum())
    vectors = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        noise = rng.standard_normal((stop - start, dim)) * (spread / np.sqrt(dim))
        vectors[start:stop] = _unit(centres[topic[start:stop]] + noise)
    return [f"item-{i}" for i in range(n)], vectors


def queries_near(vectors: np.ndarray, n: int, *, seed: int = 1, noise: float = 0.5) -> np.ndarray:
    """``n`` unit queries, each a random catalog vector plus noise (a user near their items)."""
    rng = np.random.default_rng(seed)
    base = vectors[rng.integers(len(vectors), size=n)]
    jitter = rng.standard_normal(base.shape) * (noise / np.sqrt(vectors.shape[1]))
    return _unit(base + jitter)
