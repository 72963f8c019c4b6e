"""Item-vector files: the catalog as string ids plus a float32 matrix.

One ``.npz`` (uncompressed, no pickles) with arrays ``ids`` (unicode) and ``vectors``
(float32, shape ``[n, d]``). The synthetic data generator writes its ground-truth catalog
in this format and ``streamrec index build --vectors`` reads it, as does training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_vectors(path: Path | str, ids: list[str] | np.ndarray, vectors: np.ndarray) -> Path:
    """Write ids and vectors; the row order of ``vectors`` follows ``ids``."""
    path = Path(path)
    ids_arr = np.asarray(ids, dtype=np.str_)
    vecs = np.ascontiguousarray(vectors, dtype=np.float32)
    if vecs.ndim != 2 or len(ids_arr) != vecs.shape[0]:
        raise ValueError(
            f"need one vector per id: {len(ids_arr)} ids, vectors of shape {vecs.shape}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:  # an open file keeps numpy from appending a second .npz
        np.savez(f, ids=ids_arr, vectors=vecs)
    return path


def load_vectors(path: Path | str) -> tuple[list[str], np.ndarray]:
    """Read ids and vectors written by :func:`save_vectors`."""
    with np.load(Path(path), allow_pickle=False) as data:
        if "ids" not in data or "vectors" not in data:
            raise ValueError(f"{path}: not an item-vector file (needs arrays 'ids' and 'vectors')")
        ids = data["ids"].tolist()
        vectors = np.ascontiguousarray(data["vectors"], dtype=np.float32)
    if vectors.ndim != 2 or len(ids) != vectors.shape[0]:
        raise ValueError(f"{path}: {len(ids)} ids but vectors of shape {vectors.shape}")
    return ids, vectors
