"""One item id → row map, shared by the engine's per-item statistics.

Popularity (:mod:`.popular`) and co-visitation (:mod:`.covis`) keep per-item numpy arrays.
Each used to map item ids to rows of its own, so every candidate of a batch was looked up in
two dicts: on the 1M-item bench that was 0.15 of 1.0 CPU ms per event, the largest cost in
the features stage after the feature arithmetic itself. With one map, a batch looks its
candidates up once (:meth:`ItemRows.rows`) and both statistics read their arrays at those
rows (``Popular.counts_at``, ``CoVisitation.scores(..., rows=)``).

Rows are handed out in first-seen order and never reused: an item deleted from the
catalog keeps its row (its statistics are zeroed), so a row looked up once stays that
item's row for the map's life. The files the statistics are saved to keep item ids, not
rows, so a file is read into any map.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from itertools import repeat

import numpy as np


class ItemRows:
    """Item id ↔ row, append-only (see the module doc)."""

    def __init__(self) -> None:
        self._row: dict[str, int] = {}
        #: row → item id, the inverse of the map.
        self.ids: list[str] = []

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, item_id: str) -> int:
        """The item's row, -1 when it has none."""
        return self._row.get(item_id, -1)

    def row(self, item_id: str) -> int:
        """The item's row, given it the next one when it has none."""
        row = self._row.get(item_id)
        if row is None:
            row = self._row[item_id] = len(self.ids)
            self.ids.append(item_id)
        return row

    def rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """Each item's row, -1 for items without one (int64): the dict lookups run in C."""
        return np.fromiter(map(self._row.get, item_ids, repeat(-1)), np.int64, len(item_ids))

    def add(self, item_ids: Iterable[str]) -> np.ndarray:
        """Each item's row, giving new ones to items without one (int64)."""
        return np.array([self.row(item) for item in item_ids], dtype=np.int64)

    def nbytes(self) -> int:
        """Bytes of the map (dict, keys, row ints, the row → id list): what each item costs
        on top of the arrays of the statistics that share it."""
        return (
            sys.getsizeof(self._row)
            + sys.getsizeof(self.ids)
            + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in self._row.items())
        )
