"""Tuning knobs of the candidate index, as one frozen value.

``index/`` sits below the root package, so it never reads :class:`streamrec.config.Settings`
itself; the CLI and the engine loader translate settings into :class:`IndexParams` (or pass
the same names as keyword arguments to :func:`streamrec.index.build_index`).
Defaults come from ``streamrec index bench`` at 1M x 64 on 1 CPU thread (see the report in
issue 5): they reach recall@200 >= 0.95 on a clustered catalog.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

KINDS = ("flat", "hnsw", "ivf")
METRICS = ("ip", "l2")
DEVICES = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class IndexParams:
    """Everything that shapes how an index is built and searched (not what it holds)."""

    flat_max_items: int = 20_000
    """``kind="auto"`` builds an exact index up to this many items, an ANN index above."""
    large_kind: str = "ivf"
    """ANN kind ``kind="auto"`` picks above ``flat_max_items`` on CPU (GPU always uses ivf)."""
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 256
    """recall@200 0.951 at 1M x 64 with M 32 / efConstruction 80 (0.67 ms/query CPU)."""
    ivf_nlist: int = 0
    """Inverted lists; 0 = about 4 x sqrt(items), capped so every list trains on >= 39 points.
    At 1M x 64 (clustered), recall@200 0.95 cost 0.36 ms/query (CPU, batch 64) with 4000
    lists, 0.43 with 2048 and 0.45 with 8192."""
    ivf_nprobe: int = 40
    """Lists scanned per query. ``make tune-index`` (recall@200, CPU ms/query, batch 64, issue
    14): 40 of 4000 is the fewest that reaches 0.95 on the clustered 1M catalog (0.951,
    0.61 ms; 30 gives 0.930); on ``streamrec data synth``'s 1M catalog with the engine's own
    queries 5 already gives 0.990 (10: 1.000, 0.14 ms), so a catalog like that one can set
    ``STREAMREC_INDEX_IVF_NPROBE=10``. IVF-SQ8 (0.963 at 60, 0.52 ms) and fast-scan PQ with
    refine (<= 0.83 at k x 4) do not beat it by enough to be the default."""
    blas_threshold: int = 512
    """faiss uses BLAS for exact distances when queries x dim >= this. faiss's default 128000
    keeps micro-batches on its scalar path; measured on 50k x 64, 1 thread: batch 64 takes
    0.95 ms/query scalar vs 0.25 with BLAS, batch 16 1.0-1.5 vs 0.37, batch 4 about even,
    batch 1 1.2-1.6 scalar vs 3.6 BLAS. So BLAS from 8 queries of dim 64."""
    compact_dead_ratio: float = 0.2
    """Rebuild the index once deleted/replaced rows exceed this share of live ones."""
    compact_min_dead: int = 1024
    """... and at least this many (small catalogs do not rebuild on every delete)."""
    background_compaction: bool = True
    """Rebuild in a background thread (searches go on) instead of inside the mutating call."""
    tombstone_filter: str = "auto"
    """How searches skip dead rows: ``selector`` (an ``IDSelectorBitmap``, CPU only),
    ``overfetch`` (ask for more and drop them) or ``auto`` (the measured faster one per
    backend). Not a setting: it lets the CPU test suite exercise both paths on every kind."""

    def __post_init__(self) -> None:
        if self.tombstone_filter not in ("auto", "selector", "overfetch"):
            raise ValueError(
                f"tombstone_filter must be auto|selector|overfetch: {self.tombstone_filter!r}"
            )
        if self.large_kind not in ("hnsw", "ivf"):
            raise ValueError(f"large_kind must be 'hnsw' or 'ivf', not {self.large_kind!r}")
        positive = ("hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_nprobe")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.ivf_nlist < 0 or self.flat_max_items < 0 or self.compact_min_dead < 0:
            raise ValueError("ivf_nlist, flat_max_items and compact_min_dead must be >= 0")
        if not self.compact_dead_ratio > 0:
            raise ValueError(f"compact_dead_ratio must be > 0, not {self.compact_dead_ratio}")

    @classmethod
    def of(cls, base: IndexParams | None = None, **overrides: Any) -> IndexParams:
        """``base`` (or the defaults) with ``overrides``; an unknown name is a clear error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown index parameter(s) {unknown}; known: {sorted(known)}")
        return replace(base or cls(), **overrides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy, stored in an index's metadata."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
