"""Recently popular items: streaming, exponentially decayed counts keyed by event time.

Cold users get these. Each action adds ``weight · 2^((ts − anchor) / half_life)`` to its
item's value; an item's decayed count *now* (the newest event ts seen) is its value times
``2^((anchor − now) / half_life)``. Because every item decays by the same factor, ordering
only changes when counts are added, so the anchor is moved (all values rescaled at once)
only when it falls 32 half-lives behind — values stay in float64 range and one event costs
O(1). Time is event time, so a replay gives identical counts.

The top-N list is recomputed lazily (one ``argpartition``) at most once per change burst,
i.e. once per micro-batch. Deleted items are dropped with :meth:`Popular.drop` and never
come back unless acted on again.

A worker starts from the counts of the training stream (:meth:`Popular.from_events`, saved
by ``streamrec train`` as ``popular.msgpack`` with :meth:`Popular.save` and read by the
engine loader with :meth:`Popular.load`), so cold users get items from its first second.

Values live at the rows of an :class:`~.rows.ItemRows` map, which the engine shares with
co-visitation so a batch looks its candidates up once (:meth:`Popular.counts_at`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamrec.streams.core.rows import ItemRows
from streamrec.streams.wire import Event, pack, unpack

if TYPE_CHECKING:
    from streamrec.streams.core.statistics import StatsDelta

_RESCALE_HALF_LIVES = 32.0


class Popular:
    """Exponentially decayed item counts (by event time) with a cached top-N."""

    def __init__(
        self, half_life_s: float, top_n: int = 1000, *, rows: ItemRows | None = None
    ) -> None:
        """``rows``: the item row map to keep values at (shared with co-visitation by the
        engine's builders; a map of its own without)."""
        self.half_life_ms = half_life_s * 1000.0
        self.top_n = top_n
        self.rows = ItemRows() if rows is None else rows
        self.now = -1  # newest event ts seen (ms)
        self._anchor = 0
        self._values = np.zeros(1024, dtype=np.float64)
        self._held = np.zeros(1024, dtype=bool)  # rows counted here and not dropped since
        self._since = np.zeros(1024, dtype=np.int64)  # when a held row was first counted
        self._added = 0  # rows that became held so far: the clock of _since
        self._top: tuple[list[str], np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self._held.sum())

    def add(self, item_id: str, ts: int, weight: float = 1.0) -> None:
        """Count one action on ``item_id`` at event time ``ts`` (ms)."""
        if self.now < 0:
            self._anchor = ts
        else:
            # One event moves the clock at most 32 half-lives on (a ts in µs or 2^64-1 would
            # zero every count at once, or overflow): counts shrink by 2^-32 at worst and keep
            # their order. Validation keeps such events out; this is the backstop.
            ts = min(ts, self.now + int(_RESCALE_HALF_LIVES * self.half_life_ms))
        if ts > self.now:
            self.now = ts
            if (self.now - self._anchor) > _RESCALE_HALF_LIVES * self.half_life_ms:
                self._rescale()
        row = self.rows.row(item_id)
        if row >= len(self._values):
            self._grow(row)
        if not self._held[row]:
            self._held[row] = True
            self._since[row] = self._added
            self._added += 1
        self._values[row] += weight * 2.0 ** ((ts - self._anchor) / self.half_life_ms)
        self._top = None

    def commit(self, delta: StatsDelta) -> None:
        """Count one batch's actions, in event order (the engine's one way in, see
        :mod:`.statistics`)."""
        for item_id, ts, weight in zip(delta.items, delta.ts, delta.weights, strict=True):
            self.add(item_id, ts, weight)

    def drop(self, item_ids: Iterable[str]) -> None:
        """Forget items (deleted from the catalog): they are never served from here again."""
        for item_id in item_ids:
            row = self.rows.get(item_id)
            if 0 <= row < len(self._held) and self._held[row]:
                self._values[row] = 0.0
                self._held[row] = False
                self._top = None

    def counts(self, item_ids: Sequence[str]) -> np.ndarray:
        """Decayed counts as of ``now`` for the given items (0 for unknown ones), float64."""
        return self.counts_at(self.rows.rows(item_ids))

    def counts_at(self, rows: np.ndarray) -> np.ndarray:
        """:meth:`counts` of the items at ``rows`` of :attr:`rows` (-1: unknown, 0)."""
        known = (rows >= 0) & (rows < len(self._values))
        values = np.where(known, self._values[np.where(known, rows, 0)], 0.0)
        return values * self._scale_now()

    def top(self) -> tuple[list[str], np.ndarray]:
        """The ``top_n`` most recently popular items, best first, with their counts as of now.

        Ties are broken by first appearance, so the order is deterministic.
        """
        if self._top is None:
            values = self._values
            live = np.flatnonzero(values > 0)
            if len(live) > self.top_n:
                live = live[np.argpartition(-values[live], self.top_n - 1)[: self.top_n]]
            live = live[np.lexsort((self._since[live], -values[live]))]
            ids = self.rows.ids
            self._top = ([ids[row] for row in live.tolist()], values[live] * self._scale_now())
        return self._top

    def _scale_now(self) -> float:
        return 2.0 ** ((self._anchor - self.now) / self.half_life_ms) if self.now >= 0 else 0.0

    def _rescale(self) -> None:
        self._values *= 2.0 ** ((self._anchor - self.now) / self.half_life_ms)
        self._anchor = self.now

    def _grow(self, row: int) -> None:
        """Room for ``row`` (at least doubling, so growth costs O(1) per item)."""
        size = max(2 * len(self._values), row + 1)
        self._values = np.concatenate([self._values, np.zeros(size - len(self._values))])
        self._held = np.concatenate([self._held, np.zeros(size - len(self._held), dtype=bool)])
        self._since = np.concatenate([self._since, np.zeros(size - len(self._since), np.int64)])

    def to_map(self) -> dict[str, Any]:
        """A msgpack-friendly snapshot (item → count as of ``now``, in order of first
        appearance, which breaks ties in :meth:`top`), for checkpoints: ids, not rows, so it
        reads into any row map."""
        held = np.flatnonzero(self._held)
        held = held[np.argsort(self._since[held], kind="stable")]  # first appearance order
        return {
            "half_life_s": self.half_life_ms / 1000.0,
            "top_n": self.top_n,
            "now": self.now,
            "ids": [self.rows.ids[row] for row in held.tolist()],
            "counts": self.counts_at(held).tolist(),
        }

    @classmethod
    def from_map(
        cls,
        data: dict[str, Any],
        *,
        half_life_s: float | None = None,
        top_n: int | None = None,
        rows: ItemRows | None = None,
    ) -> Popular:
        """Rebuild from :meth:`to_map`'s output; ``half_life_s``/``top_n`` replace the saved
        ones (the counts as of ``now`` are the same whatever half-life decays them later);
        ``rows`` as for the constructor."""
        popular = cls(
            float(data["half_life_s"]) if half_life_s is None else half_life_s,
            int(data["top_n"]) if top_n is None else top_n,
            rows=rows,
        )
        for item_id, count in zip(data["ids"], data["counts"], strict=True):
            if count > 0:
                popular.add(item_id, int(data["now"]), float(count))
        return popular

    def snapshot(self) -> bytes:
        """:meth:`to_map` as msgpack (the checkpoint side of :mod:`.statistics`)."""
        return pack(self.to_map())

    def restore(self, data: bytes) -> None:
        """Replace the counts with a :meth:`snapshot`, keeping this half-life, top-N and row
        map."""
        restored = Popular.from_map(
            unpack(data), half_life_s=self.half_life_ms / 1000.0, top_n=self.top_n, rows=self.rows
        )
        self.__dict__.update(restored.__dict__)

    @classmethod
    def from_events(
        cls,
        events: Iterable[Event],
        *,
        half_life_s: float,
        top_n: int,
        action_weights: Mapping[str, float],
    ) -> Popular:
        """The counts the engine would hold after applying ``events`` (in time order): each
        action weighted as the update rule weighs it (action weight x the event's weight)."""
        popular = cls(half_life_s, top_n)
        for e in events:
            popular.add(
                e.item_id, e.ts, action_weights[e.action] * (1.0 if e.weight is None else e.weight)
            )
        return popular

    def save(self, path: Path | str) -> None:
        """Write :meth:`to_map` as one msgpack map (``popular.msgpack`` in the artifacts)."""
        Path(path).write_bytes(pack(self.to_map()))

    @classmethod
    def load(
        cls,
        path: Path | str,
        *,
        half_life_s: float | None = None,
        top_n: int | None = None,
        rows: ItemRows | None = None,
    ) -> Popular:
        """Read a file written by :meth:`save` (see :meth:`from_map` for the overrides)."""
        return cls.from_map(
            unpack(Path(path).read_bytes()), half_life_s=half_life_s, top_n=top_n, rows=rows
        )
