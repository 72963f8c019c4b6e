"""The mutable candidate index: batched search with per-query exclusions, upsert, delete.

Design (why it looks like this):

* One lock guards the current :class:`~streamrec.index.segment.Segment` against mutation
  while a search runs (faiss HNSW/IVF ``add`` is not safe next to a search). Worker
  processes run one compute thread each, so searches serialise anyway.
* Deletes and replacements are tombstones. CPU HNSW/IVF searches skip them with an
  ``IDSelectorBitmap``; GPU and flat searches over-fetch past them (see
  :attr:`~streamrec.index.backends.Backend.prefers_selector` for the measurements).
  When tombstones pass ``compact_dead_ratio`` of the live rows (and ``compact_min_dead``),
  a compaction rebuilds the index from the live rows, by default in a background thread:
  searches continue on the old generation, and mutations made meanwhile are journalled
  and replayed onto the new one before it is swapped in. Its cost is a build of the live
  items (100k x 64, 80k live, 1 thread, CPU time: flat 0.09 s, IVF 1.3 s, HNSW 7.9 s; at 1M
  IVF ~1.5 min and HNSW ~13 min wall on the loaded 2-core machine), two generations in
  memory meanwhile, and that CPU taken from searches while it runs.
* Per-query exclusions (a user's seen items) are removed by over-fetching
  ``k + min(|largest exclusion set|, k)`` in ONE batched faiss call, with a doubling retry
  for the queries still short and an exact scan as the last resort (an ANN index that ran
  out of candidates). One selector-filtered faiss call per query instead was measured
  (200k x 64, batch 64, k 200, 10-200 excluded items per query, 1 thread, noisy shared
  machine): flat 5-14 vs 1-2 ms/query batched, HNSW and IVF within noise of each other,
  so the batched over-fetch, which also works on GPU, is the one path.
* Scores are "higher is better" for both metrics: the inner product for ``ip``, the
  negated squared distance for ``l2``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.index.backends import Backend, search_params
from streamrec.index.params import IndexParams
from streamrec.index.segment import Progress, Segment

log = logging.getLogger(__name__)
_NO_ROWS = np.empty(0, np.int64)
#: Largest (queries x rows) for which exclusions are filtered through a bitmap rather than a
#: sorted-key binary search: ML-1M (3.7k items, 256 queries) 5 ms -> under 1 ms per batch.
_BITMAP_MAX = 1 << 23


@dataclass
class IndexStats:
    """Counters for operators (the worker exports them as metrics): how often searches needed
    a second faiss call or the exact fallback, and what compaction costs."""

    searches: int = 0
    queries: int = 0
    retries: int = 0
    """Extra faiss calls for queries that came up short after filtering."""
    exact_fallbacks: int = 0
    """Queries answered by the exact scan because the ANN index ran out of candidates."""
    compactions: int = 0
    last_compaction_s: float = 0.0


@dataclass
class SearchResult:
    """Per query: item ids best first and their scores (higher is better), k each when the
    catalog (minus exclusions) holds k items; with ``search(..., with_vectors=True)`` also
    their vectors (``[len(ids[q]), dim]`` float32 each), so a caller that needs them (the
    engine's features) does not look every hit up again by id."""

    ids: list[list[str]]
    scores: list[np.ndarray]
    vectors: list[np.ndarray] | None = None


class CandidateIndex:
    """A FAISS index over string item ids; built by :func:`build_index` or :func:`load_index`."""

    def __init__(
        self, backend: Backend, dim: int, params: IndexParams, segment: Segment, source: str = ""
    ) -> None:
        self._backend = backend
        self.dim = dim
        self.params = params
        self.source = source
        self._seg = segment
        self._lock = threading.RLock()
        self._journal: list[tuple[str, list[str], np.ndarray | None]] | None = None
        self._compactor: threading.Thread | None = None
        self.stats = IndexStats()

    # --- description ---------------------------------------------------------------
    @property
    def metric(self) -> str:
        return self._backend.metric

    @property
    def kind(self) -> str:
        return self._backend.kind

    @property
    def device(self) -> str:
        return self._backend.device

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def tombstones(self) -> int:
        """Dead rows still inside the faiss index (deleted or replaced, not yet compacted)."""
        return self._seg.dead

    @property
    def compacting(self) -> bool:
        """True between a compaction's snapshot and its swap (mutations are journalled)."""
        return self._journal is not None

    def __len__(self) -> int:
        return len(self._seg.pos)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._seg.pos

    def live_ids(self) -> Collection[str]:
        """The ids in the index, as a view with C-speed membership tests, for filters that
        test many ids per call (no copy; valid until the next upsert or delete)."""
        return self._seg.pos.keys()

    def __repr__(self) -> str:
        return (
            f"CandidateIndex(kind={self.kind!r}, device={self.device!r}, metric={self.metric!r}, "
            f"dim={self.dim}, items={len(self)}, tombstones={self.tombstones})"
        )

    # --- reads ---------------------------------------------------------------------
    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[Collection[str]] | None = None,
        *,
        with_vectors: bool = False,
    ) -> SearchResult:
        """Top-``k`` items for each query row, never an excluded or deleted item (and, with
        ``with_vectors``, the hits' vectors: a gather by row, no id lookups)."""
        q = check_vectors(queries, self.dim, "queries")
        if k < 1:
            raise ValueError(f"k must be >= 1, not {k}")
        if exclude is not None and len(exclude) != len(q):
            raise ValueError(f"exclude has {len(exclude)} sets for {len(q)} queries")
        with self._lock:
            return _search(
                self._seg, self._backend, self.params, q, k, exclude, self.stats, with_vectors
            )

    def get_vectors(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of ``ids`` (zeros where unknown) and a mask of which were found."""
        with self._lock:
            seg = self._seg
            rows = _rows_of(seg, ids)
            found = rows >= 0
            out = seg.vectors[np.maximum(rows, 0)]  # one gather; unknown ids zeroed below
        out[~found] = 0.0
        return out, found

    # --- writes --------------------------------------------------------------------
    def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add new items or replace the vectors of existing ones; visible to the next search."""
        ids = check_ids(ids)
        v = check_vectors(vectors, self.dim, "vectors")
        if len(v) != len(ids):
            raise ValueError(f"need one vector per id: {len(ids)} ids, {len(v)} vectors")
        if not ids:
            return
        with self._lock:
            self._seg.upsert(ids, v)
            if self._journal is not None:
                self._journal.append(("upsert", ids, v.copy()))
            due = self._compaction_due()
        if due:
            self._compact_soon()

    def delete(self, ids: Sequence[str]) -> None:
        """Remove items; an unknown id is a ``KeyError`` and nothing is deleted."""
        ids = check_ids(ids)
        with self._lock:
            unknown = [i for i in ids if i not in self._seg.pos]
            if unknown:
                raise KeyError(f"cannot delete unknown item id(s): {_preview(unknown)}")
            self._seg.delete(ids)
            if self._journal is not None:
                self._journal.append(("delete", ids, None))
            due = self._compaction_due()
        if due:
            self._compact_soon()

    def compact(self) -> None:
        """Rebuild from the live rows now (waits for a running background compaction first).

        Cost: a full rebuild of the live items (HNSW: graph construction; IVF: k-means +
        assignment; flat: a copy), done off the lock so searches keep running.
        """
        running = self._compactor
        if running is not None:
            running.join()
        self._rebuild()

    def wait_for_compaction(self, timeout: float | None = None) -> None:
        """Block until a background compaction (if any) has finished."""
        running = self._compactor
        if running is not None:
            running.join(timeout)

    def save(self, directory: Path) -> None:
        """Write index, id map and metadata to ``directory`` (see :mod:`.persist`)."""
        from streamrec.index.persist import save_index

        with self._lock:
            save_index(self, self._seg, Path(directory))

    # --- compaction ----------------------------------------------------------------
    def _compaction_due(self) -> bool:
        seg = self._seg
        threshold = max(self.params.compact_min_dead, self.params.compact_dead_ratio * len(seg.pos))
        return self._journal is None and seg.dead > 0 and seg.dead >= threshold

    def _compact_soon(self) -> None:
        if not self.params.background_compaction:
            self._rebuild()
            return
        with self._lock:
            if self._compactor is not None and self._compactor.is_alive():
                return
            self._compactor = threading.Thread(
                target=self._rebuild_logged, name="index-compaction", daemon=True
            )
            self._compactor.start()

    def _rebuild_logged(self) -> None:
        try:
            self._rebuild()
        except Exception:  # a failed background rebuild keeps serving the old generation
            log.exception("index compaction failed; still serving the previous generation")

    def _rebuild(self) -> None:
        with self._lock:
            if self._journal is not None:
                return  # another compaction is already between snapshot and swap
            seg = self._seg
            rows = np.flatnonzero(seg.live[: seg.rows])
            ids = seg.row_ids[rows].tolist()
            vectors = seg.vectors[rows]
            self._journal = []
        started = time.perf_counter()
        try:
            fresh = Segment.build(self._backend, self.params, ids, vectors)
            with self._lock:
                for op, op_ids, op_vectors in self._journal:
                    if op == "upsert":
                        fresh.upsert(op_ids, op_vectors)
                    else:
                        fresh.delete(op_ids)
                self._seg = fresh
                self.stats.compactions += 1
                self.stats.last_compaction_s = time.perf_counter() - started
                log.info(
                    "index compacted in %.1f s: %d live items, %d dead rows dropped",
                    self.stats.last_compaction_s,
                    len(ids),
                    seg.dead,
                )
        finally:
            with self._lock:
                self._journal = None


def _search(
    seg: Segment,
    backend: Backend,
    params: IndexParams,
    q: np.ndarray,
    k: int,
    exclude: Sequence[Collection[str]] | None,
    stats: IndexStats,
    with_vectors: bool = False,
) -> SearchResult:
    n = len(q)
    stats.searches += 1
    stats.queries += n
    ex_rows = [_live_rows(seg, ex) for ex in exclude] if exclude is not None else [_NO_ROWS] * n
    want = np.minimum(k, len(seg.pos) - np.array([len(r) for r in ex_rows], dtype=np.int64))
    bitmap = _Exclusions(seg, ex_rows)
    use_selector = params.tombstone_filter == "selector" or (
        params.tombstone_filter == "auto" and backend.prefers_selector
    )
    selector = seg.selector() if use_selector and seg.dead else None
    # Over-fetch by the largest exclusion set, capped at k: users with long histories retry
    # (only their queries) instead of making every query of the batch ask for k + 1000.
    kq = k + min(max((len(r) for r in ex_rows), default=0), k)
    if selector is None and seg.dead:  # expect dead rows among hits in proportion; retry if not
        kq = int(kq * seg.rows / max(len(seg.pos), 1)) + 8
    kq = min(seg.rows, kq, backend.max_k)

    out_rows: list[np.ndarray] = [np.empty(0, np.int64)] * n
    out_scores: list[np.ndarray] = [np.empty(0, np.float32)] * n
    pending = np.flatnonzero(want > 0)
    try:
        while len(pending) and kq > 0:
            sp = search_params(backend, params, kq, selector)
            dist, lab = seg.index.search(q[pending], kq, params=sp)
            valid = lab >= 0
            safe = np.where(valid, lab, 0)
            if selector is None and seg.dead:
                valid &= seg.live[safe]
            valid &= ~bitmap.excluded(pending, safe)
            enough = valid.sum(axis=1) >= want[pending]
            exhausted = (lab[:, -1] < 0) | (kq >= min(seg.rows, backend.max_k))
            done = np.flatnonzero(enough)
            if len(done):  # each query's first ``want`` valid hits, picked for all at once
                wants = want[pending[done]]
                take = valid[done] & (np.cumsum(valid[done], axis=1) <= wants[:, None])
                cuts = np.cumsum(wants)[:-1]
                rows_of = np.split(lab[done][take], cuts)
                scores_of = np.split(dist[done][take], cuts)
                for qi, rows, scores in zip(
                    pending[done].tolist(), rows_of, scores_of, strict=True
                ):
                    out_rows[qi], out_scores[qi] = rows, scores
            for j in np.flatnonzero(~enough & exhausted):  # ANN ran dry: exact scan, always right
                qi = pending[j]
                stats.exact_fallbacks += 1
                out_rows[qi], out_scores[qi] = _exact(
                    seg, backend.metric, q[qi], want[qi], ex_rows[qi]
                )
            pending = pending[~enough & ~exhausted]
            stats.retries += len(pending)
            kq = min(seg.rows, kq * 2, backend.max_k)
    finally:
        bitmap.release()
    sign = -1.0 if backend.metric == "l2" else 1.0
    # One gather (and one tolist) for the whole batch, then per-query slices and views.
    bounds = np.cumsum([0, *map(len, out_rows)]).tolist()
    spans = list(zip(bounds[:-1], bounds[1:], strict=True))
    all_rows = np.concatenate(out_rows) if n else np.empty(0, np.int64)
    all_ids = seg.row_ids[all_rows].tolist()
    all_vectors = seg.vectors[all_rows] if with_vectors else None
    return SearchResult(
        ids=[all_ids[a:b] for a, b in spans],
        scores=[(s * sign).astype(np.float32, copy=False) for s in out_scores],
        vectors=None if all_vectors is None else [all_vectors[a:b] for a, b in spans],
    )


class _Exclusions:
    """Which (query, row) pairs of one batched search are excluded: one lookup per hit in
    a (query, column) bitmap. Columns are the rows themselves when ``queries x rows`` fits
    in :data:`_BITMAP_MAX` (a small catalog), else the batch's excluded rows numbered
    0..E-1 through the segment's row scratch (:meth:`Segment.column_of_row`: a gather per
    hit, no sort); only beyond both, sorted (query, row) keys and a binary search (at 1M
    items every batch took that path: a ``searchsorted`` of every hit, ~11 % of a batch's
    CPU in the throughput issue's profile)."""

    def __init__(self, seg: Segment, ex_rows: Sequence[np.ndarray]) -> None:
        n = len(ex_rows)
        rows = np.concatenate([*ex_rows, _NO_ROWS])
        owner = np.repeat(np.arange(n, dtype=np.int64), [len(r) for r in ex_rows])
        self.columns: np.ndarray | None = None  # row -> column scratch (None: identity)
        self.rows = rows
        self.bitmap: np.ndarray | None = None
        self.keys = _NO_ROWS
        if not rows.size:
            return
        stride = max(seg.rows, 1)
        if n * stride <= _BITMAP_MAX:
            self.width = stride
            cols = rows
        elif n * rows.size <= _BITMAP_MAX:
            self.columns = seg.column_of_row()
            self.columns[rows] = np.arange(rows.size)  # a row excluded twice: one column
            self.width = rows.size
            cols = self.columns[rows]
        else:  # keys are sorted: a binary search beats np.isin's hashing here
            self.width = stride
            self.keys = np.sort(owner * stride + rows)
            return
        self.bitmap = np.zeros(n * self.width, dtype=bool)
        self.bitmap[owner * self.width + cols] = True

    def excluded(self, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``[len(queries), h]`` bool: hit ``rows[i, j]`` of query ``queries[i]`` is excluded."""
        if self.bitmap is not None:
            if self.columns is None:
                return self.bitmap[queries[:, None] * self.width + rows]
            cols = self.columns[rows]
            flat = queries[:, None] * self.width + np.maximum(cols, 0)
            return (cols >= 0) & self.bitmap[flat]
        if not self.keys.size:
            return np.zeros(rows.shape, dtype=bool)
        flat = queries[:, None] * self.width + rows
        at = np.minimum(np.searchsorted(self.keys, flat), self.keys.size - 1)
        return self.keys[at] == flat

    def release(self) -> None:
        """Hand the row scratch back all -1 (call once the search is done)."""
        if self.columns is not None:
            self.columns[self.rows] = -1
            self.columns = None


def _rows_of(seg: Segment, ids: Collection[str]) -> np.ndarray:
    """Row of each id, -1 where unknown or deleted: the dict lookups run in C (``map``),
    which halved this step against a Python comprehension on ML-1M-sized batches."""
    return np.fromiter(map(seg.pos.get, ids, repeat(-1)), np.int64, len(ids))


def _live_rows(seg: Segment, exclude: Collection[str]) -> np.ndarray:
    """Rows of the live items among ``exclude`` (unknown or deleted ids need no exclusion).
    Distinct ids have distinct rows, so a set (or any duplicate-free collection) gives
    distinct rows."""
    rows = _rows_of(seg, exclude)
    rows = rows[rows >= 0]
    return rows if isinstance(exclude, set | frozenset) else np.unique(rows)


def _exact(
    seg: Segment, metric: str, q: np.ndarray, want: int, excluded: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Brute force over live rows; scores in faiss convention (ip: dot, l2: squared dist)."""
    vectors = seg.vectors[: seg.rows]
    sim = vectors @ q
    if metric == "l2":
        sim = 2 * sim - np.einsum("ij,ij->i", vectors, vectors) - float(q @ q)
    sim[~seg.live[: seg.rows]] = -np.inf
    sim[excluded] = -np.inf
    top = np.argpartition(-sim, want - 1)[:want]
    top = top[np.argsort(-sim[top], kind="stable")]
    scores = sim[top] if metric == "ip" else -sim[top]
    return top.astype(np.int64), scores.astype(np.float32)


def check_vectors(vectors: Any, dim: int | None, what: str) -> np.ndarray:
    """A C-contiguous float32 ``[n, dim]`` copy-or-view; clear errors for shape and NaN/inf."""
    v = np.asarray(vectors)
    if v.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array [n, dim], got shape {v.shape}")
    if dim is not None and v.shape[1] != dim:
        raise ValueError(f"{what} have dimension {v.shape[1]} but the index has dimension {dim}")
    v = np.ascontiguousarray(v, dtype=np.float32)
    finite = np.isfinite(v).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"{what} contain NaN or infinite values in {len(bad)} row(s): {_preview(bad.tolist())}"
        )
    return v


def check_ids(ids: Sequence[str]) -> list[str]:
    """Ids as a list of non-empty strings with no duplicate (a duplicate is ambiguous)."""
    out = [ids] if isinstance(ids, str) else list(ids)
    bad = [i for i in out if not isinstance(i, str) or not i]
    if bad:
        raise ValueError(f"item ids must be non-empty strings: {_preview(bad)}")
    if len(set(out)) != len(out):
        seen: set[str] = set()
        dups = sorted({i for i in out if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate item id(s) in one call: {_preview(dups)}")
    return out


def _preview(items: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f" ... ({len(items)} in all)" if len(items) > limit else "")


def build_index(
    ids: Sequence[str],
    vectors: np.ndarray,
    *,
    kind: str = "auto",
    metric: str = "ip",
    device: str = "auto",
    source: str = "",
    progress: Progress | None = None,
    **params: Any,
) -> CandidateIndex:
    """Build an index over ``ids``/``vectors``; ``params`` are :class:`IndexParams` fields.

    ``kind="auto"`` picks exact search up to ``flat_max_items`` items and an ANN index above;
    ``device="auto"`` picks the GPU when faiss sees one (see :mod:`.backends`).
    """
    from streamrec.index.backends import resolve

    p = IndexParams.of(**params)
    ids = check_ids(ids)
    v = check_vectors(vectors, None, "vectors")
    if len(v) != len(ids):
        raise ValueError(f"need one vector per id: {len(ids)} ids, {len(v)} vectors")
    backend = resolve(kind, metric, device, len(ids), p)
    segment = Segment.build(backend, p, ids, v, progress)
    return CandidateIndex(backend, v.shape[1], p, segment, source=source)
