"""One immutable-shape generation of the index: a faiss index plus the row bookkeeping.

Rows are append-only: a faiss label *is* a row number, so no ``IndexIDMap`` is needed and
every backend (HNSW cannot remove, GPU IVF and flat cannot take ids) behaves the same.
Deleting or replacing an item only marks its old row dead (a tombstone); the next
compaction (:meth:`streamrec.index.candidate.CandidateIndex.compact`) builds a fresh
segment from the live rows. Not thread-safe on its own: the owning index holds a lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import faiss
import numpy as np

from streamrec.index.backends import Backend, new_index
from streamrec.index.params import IndexParams

ADD_CHUNK = 65_536  # rows per faiss.add call, so a long build can report progress

Progress = Callable[[int, int], None]


class Segment:
    """Faiss index + contiguous float32 copy of every row + row<->id maps + live bitmap."""

    def __init__(self, index: Any, dim: int, capacity: int = 0) -> None:
        self.index = index
        self.dim = dim
        self.rows = 0
        capacity = max(capacity, 16)
        self.vectors = np.empty((capacity, dim), dtype=np.float32)
        self.row_ids = np.empty(capacity, dtype=object)
        self.live = np.zeros(capacity, dtype=bool)
        self.bits = np.zeros(capacity // 8 + 1, dtype=np.uint8)  # live rows, faiss bit order
        self.pos: dict[str, int] = {}
        self._columns = np.zeros(0, dtype=np.int64)

    @classmethod
    def build(
        cls,
        backend: Backend,
        params: IndexParams,
        ids: Sequence[str],
        vectors: np.ndarray,
        progress: Progress | None = None,
    ) -> Segment:
        """Train (IVF) and fill a new segment; ids must be unique and vectors validated."""
        seg = cls(new_index(backend, vectors.shape[1], vectors, params), vectors.shape[1], len(ids))
        for start in range(0, len(ids), ADD_CHUNK):
            stop = min(start + ADD_CHUNK, len(ids))
            seg.append(ids[start:stop], vectors[start:stop])
            if progress is not None:
                progress(stop, len(ids))
        return seg

    @property
    def dead(self) -> int:
        """Rows still in the faiss index whose item was deleted or replaced."""
        return self.rows - len(self.pos)

    def append(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add new rows (ids not present) to faiss and the bookkeeping, in the same order."""
        n = len(ids)
        self._reserve(self.rows + n)
        self.index.add(vectors)
        rows = np.arange(self.rows, self.rows + n)
        self.vectors[rows] = vectors
        self.row_ids[rows] = list(ids)
        self.live[rows] = True
        np.bitwise_or.at(self.bits, rows >> 3, (1 << (rows & 7)).astype(np.uint8))
        self.pos.update(zip(ids, rows.tolist(), strict=True))
        self.rows += n

    def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Replace existing ids (tombstone the old row) and append everything as new rows."""
        self._kill([self.pos.pop(i) for i in ids if i in self.pos])
        self.append(ids, vectors)

    def delete(self, ids: Sequence[str]) -> None:
        """Tombstone the rows of ``ids`` (all known: the caller checked)."""
        self._kill([self.pos.pop(i) for i in ids])

    def selector(self) -> Any:
        """An ``IDSelectorBitmap`` over the live rows (valid until the next mutation)."""
        return faiss.IDSelectorBitmap(self.rows, faiss.swig_ptr(self.bits))

    def column_of_row(self) -> np.ndarray:
        """A scratch int64 array over the rows, all -1 between uses: a search maps its
        excluded rows to bitmap columns in it and sets them back to -1 before it returns
        (searches run under the index lock, one at a time)."""
        if len(self._columns) < self.rows:
            self._columns = np.full(len(self.live), -1, dtype=np.int64)
        return self._columns

    def _kill(self, rows: list[int]) -> None:
        if not rows:
            return
        r = np.asarray(rows, dtype=np.int64)
        self.live[r] = False
        np.bitwise_and.at(self.bits, r >> 3, (~(1 << (r & 7))).astype(np.uint8))

    def _reserve(self, need: int) -> None:
        cap = len(self.live)
        if need <= cap:
            return
        cap = max(need, cap * 2)
        vectors = np.empty((cap, self.dim), dtype=np.float32)
        vectors[: self.rows] = self.vectors[: self.rows]
        row_ids = np.empty(cap, dtype=object)
        row_ids[: self.rows] = self.row_ids[: self.rows]
        live = np.zeros(cap, dtype=bool)
        live[: self.rows] = self.live[: self.rows]
        bits = np.zeros(cap // 8 + 1, dtype=np.uint8)
        bits[: len(self.bits)] = self.bits
        self.vectors, self.row_ids, self.live, self.bits = vectors, row_ids, live, bits
