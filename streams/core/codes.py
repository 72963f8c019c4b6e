"""Integer codes for item ids inside the engine: string ids only at its edges.

:class:`ItemCodes` gives every item id the engine meets a permanent int code (0, 1, 2, …
in order of first sight), so the shared statistics keep their numbers in code-indexed
arrays and read them with one numpy gather per batch instead of one dict lookup per
candidate (``Popular.counts`` over a batch's ~51k candidates was 7.9 % of its CPU).

The candidates of a search come as index rows (``SearchResult.rows``); a row stands for one
item for as long as its index segment lives (``SearchResult.generation``), so
:meth:`ItemCodes.of_rows` keeps a row → code array for the current generation and looks an
id up only the first time its row is seen. Codes are never reused or forgotten (a deleted
item keeps its code; its statistics are zeroed), so nothing derived from them goes stale;
the price is one dict entry per item ever seen as a candidate or acted on (the catalog at
most, plus unknown acted-on ids: ~100 B each in CPython, as the index's own id map) and
8 B per row of the current segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat

import numpy as np


class ItemCodes:
    """Item id ↔ permanent int code, plus a per-index-generation row → code cache."""

    def __init__(self) -> None:
        self._code: dict[str, int] = {}
        #: ``ids[code]`` is the item id of ``code``.
        self.ids: list[str] = []
        self._generation = -1
        self._by_row = np.zeros(0, dtype=np.int64)  # -1: not seen in this generation

    def __len__(self) -> int:
        return len(self.ids)

    def code(self, item: str) -> int:
        """``item``'s code, given one now if it has none."""
        code = self._code.get(item)
        if code is None:
            code = self._code[item] = len(self.ids)
            self.ids.append(item)
        return code

    def codes(self, items: Sequence[str]) -> np.ndarray:
        """The codes of ``items`` (int64), new ones given as needed (in C-level passes:
        a batch's first sight of a segment's rows is tens of thousands of them)."""
        out = self.lookup(items)
        new = np.flatnonzero(out < 0)
        if len(new):
            missing = [items[j] for j in new.tolist()]
            fresh = list(dict.fromkeys(missing))
            first = len(self.ids)
            self._code.update(zip(fresh, range(first, first + len(fresh)), strict=True))
            self.ids.extend(fresh)
            out[new] = self.lookup(missing)
        return out

    def lookup(self, items: Sequence[str]) -> np.ndarray:
        """The codes of ``items`` (int64), -1 for ids without one (none given)."""
        return np.fromiter(map(self._code.get, items, repeat(-1)), np.int64, len(items))

    def of_rows(self, generation: int, rows: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        """The codes of the items at index ``rows`` of segment ``generation``, whose ids are
        ``ids`` (the search's own, aligned with ``rows``): gathered from the row cache, and
        looked up (then cached) only for rows this generation has not shown before."""
        if generation != self._generation:  # a compaction: rows mean other items now
            self._generation = generation
            self._by_row = np.full(0, -1, dtype=np.int64)
        if len(rows) and rows.max() >= len(self._by_row):
            grown = np.full(max(int(rows.max()) + 1, 2 * len(self._by_row)), -1, np.int64)
            grown[: len(self._by_row)] = self._by_row
            self._by_row = grown
        out = self._by_row[rows]
        new = np.flatnonzero(out < 0)
        if len(new):
            out[new] = self.codes([ids[j] for j in new.tolist()])
            self._by_row[rows[new]] = out[new]
        return out
