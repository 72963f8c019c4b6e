"""Saving and loading a :class:`~streamrec.index.candidate.CandidateIndex`.

A saved index is a directory:

* ``index.faiss``: the faiss index (``faiss.write_index``; GPU indexes are copied to CPU),
* ``rows.npz``: per faiss label (row) its string id, whether it is live, and its vector
  (the contiguous copy the engine reads with ``get_vectors`` and compaction rebuilds from),
* ``meta.json``: format version, dim, metric, kind, item count, rows, source, parameters.

Tombstones are saved as they are (no rebuild on save), so saving a large HNSW index is
cheap; loading restores exactly the same generation.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from streamrec.index.backends import configure, resolve, to_cpu, to_device
from streamrec.index.candidate import CandidateIndex
from streamrec.index.params import IndexParams
from streamrec.index.segment import Segment

FORMAT = "streamrec-index"
VERSION = 1
INDEX_FILE, ROWS_FILE, META_FILE = "index.faiss", "rows.npz", "meta.json"


def save_index(index: CandidateIndex, seg: Segment, directory: Path) -> None:
    """Write ``seg`` (the index's current generation; caller holds the index lock)."""
    directory.mkdir(parents=True, exist_ok=True)
    faiss.write_index(to_cpu(seg.index, index.backend), str(directory / INDEX_FILE))
    with (directory / ROWS_FILE).open("wb") as f:
        np.savez(
            f,
            ids=np.asarray(seg.row_ids[: seg.rows].tolist(), dtype=np.str_),
            live=seg.live[: seg.rows],
            vectors=seg.vectors[: seg.rows],
        )
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "dim": index.dim,
        "metric": index.metric,
        "kind": index.kind,
        "items": len(seg.pos),
        "rows": seg.rows,
        "source": index.source,
        "params": index.params.to_dict(),
        "faiss_version": faiss.__version__,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def read_meta(directory: Path) -> dict[str, Any]:
    """The metadata of a saved index; a clear error when ``directory`` is not one."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: not a saved index (no {META_FILE})")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(
            f"{directory}: unsupported index format {meta.get('format')!r} "
            f"version {meta.get('version')!r} (expected {FORMAT!r} version {VERSION})"
        )
    return meta


def load_index(
    directory: Path,
    *,
    device: str = "auto",
    dim: int | None = None,
    metric: str | None = None,
    **params: Any,
) -> CandidateIndex:
    """Load a saved index; ``dim``/``metric``, when given, must match what was saved.

    ``params`` override saved :class:`IndexParams` (e.g. ``hnsw_ef_search``, ``ivf_nprobe``).
    """
    directory = Path(directory)
    meta = read_meta(directory)
    if dim is not None and meta["dim"] != dim:
        raise ValueError(f"{directory}: index has dimension {meta['dim']}, expected {dim}")
    if metric is not None and meta["metric"] != metric:
        raise ValueError(f"{directory}: index uses metric {meta['metric']!r}, expected {metric!r}")
    p = IndexParams.of(IndexParams(**meta["params"]), **params)
    backend = resolve(meta["kind"], meta["metric"], device, meta["items"], p)
    cpu_index = faiss.read_index(str(directory / INDEX_FILE))
    with np.load(directory / ROWS_FILE, allow_pickle=False) as data:
        ids, live, vectors = data["ids"], data["live"], data["vectors"]
    if cpu_index.ntotal != len(ids) or cpu_index.d != meta["dim"] or len(vectors) != len(ids):
        raise ValueError(
            f"{directory}: inconsistent files ({cpu_index.ntotal} faiss rows of dim "
            f"{cpu_index.d}, {len(ids)} ids, {len(vectors)} vectors, meta dim {meta['dim']})"
        )
    index = to_device(cpu_index, backend)
    configure(index, backend, p)
    seg = Segment(index, meta["dim"], len(ids))
    seg.rows = len(ids)
    seg.vectors[: seg.rows] = vectors
    seg.row_ids[: seg.rows] = ids.tolist()
    seg.live[: seg.rows] = live
    packed = np.packbits(live, bitorder="little")
    seg.bits[: len(packed)] = packed
    seg.pos = {i: r for r, i in enumerate(ids.tolist()) if live[r]}
    return CandidateIndex(backend, meta["dim"], p, seg, source=meta.get("source", ""))
