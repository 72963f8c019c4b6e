"""Online item co-visitation: which items the same users act on close together in time.

Embedding retrieval finds items *like* the user's; co-visitation finds the items people
actually go on to next, which on MovieLens-1M is the stronger next-item signal (the online
item-kNN baseline beat the embedding engine, 0.186 vs 0.158 HR@10). The engine keeps both:
the strongest neighbours of a user's recent items are candidates of their own
(:meth:`CoVisitation.strongest`, the ``covis`` candidate source), and every candidate's
co-visitation, scaled to [0, 1] per user, is a reranker feature (or, without a reranker,
added to the retrieval score at a weight).

Statistics (event order, like the recently-popular counts): every applied action on item
``b`` at event time ``ts`` adds ``2^(ts / half_life)`` (see decay below) to the pair count of
``b`` with each distinct other item among the user's previous ``window`` actions, in both
directions, and to ``b``'s action count. A candidate ``c``'s score for a user whose recent
items are ``r_0`` (newest), ``r_1``, … is
``sum_i recency^i · C[r_i, c] / (n[r_i]^power · n[c]^power)`` (cosine-normalised for
``power = 0.5``).

**Bounded table.** No N x N matrix: each item keeps its ``neighbours`` (M) strongest pair
counts in a row of M (int32 neighbour code, float32 count) slots, plus a float64 action
count and its ``count^-power``: ``8·M + 16`` bytes per item (528 B at the default M = 64),
at most ``max_items`` rows, grown by doubling. Rows are those of an item row map
(:class:`~.rows.ItemRows`: ~110 B more per id in CPython), which the engine shares with
popularity so a batch looks its candidates up once; an item whose row is ``max_items`` or
more is not counted. A pair count that arrives for a full row takes
the weakest slot only when it is at least that slot's count, so a row is always the top M
of what it held plus what arrived (ties go to the newcomer). Each direction is kept by its
own row: ``C[a, b]`` and ``C[b, a]`` are equal while both rows hold the pair since its
first count, and a row that evicted a pair and took it back counts it again from there
(never more than the true count). A row's scoring reads only its own M entries, so a
popular item's long tail of weak partners costs nothing.

**Decay** is by event time, as for popularity (:mod:`.popular`): a count is worth
``2^(-(now - ts) / half_life)`` at the newest event time ``now``, so old pairs fade and
make room for new ones. Every count decays by the same factor, so the table stores values
scaled by ``2^((ts - anchor) / half_life)`` and only rescales (one pass) when ``now`` runs
32 half-lives past the anchor; the per-user scaling of the scores makes them independent of
that scale. ``half_life_s = 0`` turns decay off (counts of 1).

Counts are updated per micro-batch through :meth:`CoVisitation.commit` (the engine's one
way in, :mod:`.statistics`) in a few vectorised numpy steps whatever the batch size;
:meth:`CoVisitation.scores` gathers the recent items' rows for every user of a batch at
once. The table serialises with :meth:`to_bytes` (``covis.npz`` in the artifacts, written by
``streamrec train`` from the training stream with :meth:`from_events`).
"""

from __future__ import annotations

import io
from collections import defaultdict, deque
from collections.abc import Container, Iterable, Sequence
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamrec.streams.core.rows import ItemRows
from streamrec.streams.wire import Event

if TYPE_CHECKING:
    from streamrec.streams.core.statistics import StatsDelta

_RESCALE_HALF_LIVES = 32.0
#: Row codes fit in the low 32 bits of a (user or row, code) key.
_SHIFT = np.int64(32)


class CoVisitation:
    """Per item, the top-M decayed co-visitation counts; scored for batches of candidates."""

    def __init__(
        self,
        *,
        window: int = 3,
        recent: int = 10,
        recency: float = 0.7,
        power: float = 0.5,
        neighbours: int = 64,
        half_life_s: float = 7_776_000.0,
        max_items: int = 1 << 21,
        rows: ItemRows | None = None,
    ) -> None:
        """``rows``: the item row map to keep the table at (shared with popularity by the
        engine's builders; a map of its own without)."""
        if neighbours < 1 or not 1 <= max_items < 1 << 31:
            raise ValueError("co-visitation needs neighbours >= 1 and 1 <= max_items < 2^31")
        self.window = window
        self.recent = recent
        self.recency = recency
        self.power = power
        self.neighbours = neighbours
        self.half_life_ms = half_life_s * 1000.0
        self.max_items = max_items
        self.now = -1  # newest event ts counted (ms); -1: none yet
        self._anchor = 0
        self.rows = ItemRows() if rows is None else rows
        self._items = 0  # rows counted here
        self._version = 0  # bumped by every count: what a kept read (_summed) is valid for
        self._last_read: tuple[Any, Any] | None = None
        self._nbr = np.full((0, neighbours), -1, dtype=np.int32)
        self._wt = np.zeros((0, neighbours), dtype=np.float32)
        self._count = np.zeros(0, dtype=np.float64)
        self._inv = np.zeros(0, dtype=np.float64)
        self._held = np.zeros(0, dtype=bool)  # rows counted here

    def __len__(self) -> int:
        return self._items

    @property
    def bytes_per_item(self) -> int:
        """Array bytes one item's row takes: ``neighbours`` int32 codes and float32 counts,
        its float64 action count and its inverse (the id map's entry comes on top)."""
        return 8 * self.neighbours + 16

    @property
    def nbytes(self) -> int:
        """Array bytes held now: rows allocated (at most ``max_items``) x bytes per item."""
        return self._nbr.nbytes + self._wt.nbytes + self._count.nbytes + self._inv.nbytes

    def id_map_bytes(self) -> int:
        """Bytes of the item row map (:meth:`~.rows.ItemRows.nbytes`, shared with
        popularity in the engine): the rest of an item's cost."""
        return self.rows.nbytes()

    @classmethod
    def from_events(cls, events: Iterable[Event], **params: Any) -> CoVisitation:
        """The statistics the engine would hold after applying ``events`` (in order, each
        once); ``params`` as for the constructor. For ``streamrec train`` to save with
        :meth:`save`, so a worker starts with them."""
        covis = cls(**params)
        history: defaultdict[str, deque[str]] = defaultdict(lambda: deque(maxlen=covis.window))
        items: list[str] = []
        previous: list[list[str]] = []
        ts: list[int] = []
        for event in events:
            before = history[event.user_id]
            items.append(event.item_id)
            previous.append(list(before))
            ts.append(event.ts)
            before.append(event.item_id)
            if len(items) == 4096:  # as the engine's micro-batches: chunks of applied events
                covis.add(items, previous, ts)
                items, previous, ts = [], [], []
        covis.add(items, previous, ts)
        return covis

    def commit(self, delta: StatsDelta) -> None:
        """Count one batch's actions (the engine's one way in, see :mod:`.statistics`)."""
        self.add(delta.items, delta.previous, delta.ts)

    def add(
        self, items: Sequence[str], previous: Sequence[Sequence[str]], ts: Sequence[int]
    ) -> None:
        """Count applied actions: ``items[j]`` at event time ``ts[j]`` (ms) by a user whose
        actions before it were ``previous[j]`` (oldest first; only the last ``window``
        count)."""
        acted: list[int] = []
        stamps: list[int] = []
        rows: list[int] = []
        cols: list[int] = []
        pairs_of: list[int] = []  # per acted event, how many pairs it adds
        for item, before, t in zip(items, previous, ts, strict=True):
            code = self._code_of(item)
            if code < 0:
                continue
            acted.append(code)
            stamps.append(t)
            others = {self._code_of(p) for p in before[-self.window :] if p != item}
            others.discard(-1)
            rows += others
            cols += [code] * len(others)
            pairs_of.append(len(others))
        if not acted:
            return
        self._version += 1
        weight = self._weights(np.asarray(stamps, dtype=np.int64))
        codes = np.asarray(acted, dtype=np.int64)
        np.add.at(self._count, codes, weight)
        self._refresh_inverse(codes)
        if rows:
            a = np.asarray(rows, dtype=np.int64)
            b = np.asarray(cols, dtype=np.int64)
            per_pair = np.repeat(weight, pairs_of)
            cells, where = np.unique(
                np.concatenate([a << _SHIFT | b, b << _SHIFT | a]), return_inverse=True
            )
            sums = np.bincount(where, np.concatenate([per_pair, per_pair]))
            self._insert(cells >> _SHIFT, cells & 0xFFFFFFFF, sums)

    def scores(
        self,
        histories: Sequence[Sequence[str]],
        candidates: Sequence[Sequence[str]],
        *,
        rows: np.ndarray | None = None,
    ) -> np.ndarray:
        """Scaled co-visitation of every candidate with its user's recent items, flattened
        like ``candidates`` (all of user 0's, then user 1's, …); ``histories[b]`` is user
        b's recent items oldest first (the last ``recent`` count, the newest most). Each
        user's scores are divided by that user's largest score over every item its recent
        items' rows hold (not only the candidates), so they lie in [0, 1]. ``rows``: the
        flattened candidates' rows in :attr:`rows` when the caller looked them up already
        (:meth:`~.rows.ItemRows.rows`)."""
        counts = np.array([len(c) for c in candidates], dtype=np.int64)
        total = int(counts.sum())
        summed = self._summed(histories) if total else None
        if summed is None:
            return np.zeros(total, dtype=np.float64)
        keys, sums, top = summed
        users = len(candidates)
        if rows is None:
            rows = self.rows.rows(list(chain.from_iterable(candidates)))
        cand = self._held_rows(rows)
        cand_owner = np.repeat(np.arange(users, dtype=np.int64), counts)
        want = cand_owner << _SHIFT | np.maximum(cand, 0)
        at = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
        out = np.where((cand >= 0) & (keys[at] == want), sums[at], 0.0)
        scale = top[cand_owner]
        return np.where(scale > 0, out / np.where(scale > 0, scale, 1.0), 0.0)

    def strongest(
        self,
        histories: Sequence[Sequence[str]],
        n: int,
        skip: Sequence[tuple[Container[str], Container[str]]],
        allowed: Container[str],
    ) -> list[tuple[list[str], np.ndarray]]:
        """Each user's ``n`` best-scored items (the :meth:`scores` of every item its recent
        items' rows hold), best first, with their scaled scores: the neighbours of what the
        user just did, as candidates. ``skip[b]``: two collections of items user b must not
        get (e.g. excluded, already listed); only items in ``allowed`` (the live catalog,
        with fast membership tests) are given. One gather for the batch; per user, the
        ranked items are filtered in slices of ``2n`` until ``n`` are found (most of a long
        history's neighbours are items it has seen)."""
        none: tuple[list[str], np.ndarray] = ([], np.zeros(0, dtype=np.float64))
        summed = self._summed(histories) if n > 0 else None
        if summed is None:
            return [none] * len(histories)
        keys, sums, top = summed
        owner = keys >> _SHIFT
        scaled = sums / top[owner]  # in (0, 1]: one float key orders by user, then strongest
        order = np.argsort(2.0 * owner - scaled, kind="stable")  # ties: by code (as keys)
        codes = (keys[order] & 0xFFFFFFFF).tolist()
        bounds = np.searchsorted(owner[order], np.arange(len(histories) + 1)).tolist()
        ranked = scaled[order]
        ids = self.rows.ids
        out: list[tuple[list[str], np.ndarray]] = []
        for b, (first, second) in enumerate(skip):
            picked: list[str] = []
            at: list[int] = []
            lo, hi = bounds[b], bounds[b + 1]
            while lo < hi and len(picked) < n:
                stop = min(lo + 2 * n, hi)
                fresh = [
                    (j, item)
                    for j, item in zip(
                        range(lo, stop), [ids[c] for c in codes[lo:stop]], strict=True
                    )
                    if item not in first and item not in second and item in allowed
                ][: n - len(picked)]
                picked += [item for _, item in fresh]
                at += [j for j, _ in fresh]
                lo = stop
            out.append((picked, ranked[at]) if picked else none)
        return out

    def _summed(
        self, histories: Sequence[Sequence[str]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Every user's summed score of each item its recent items' rows hold: the sorted
        keys ``user << 32 | code``, their sums, and each user's largest sum (0 for a user
        with none); None when no user's rows hold anything. The last result is kept until
        the next count (:meth:`add`) for a second read of the same histories."""
        if not self._items:
            return None
        # the candidate source and the feature read the same users in one batch: once
        key = (self._version, [tuple(h[-self.recent :]) for h in histories])
        if self._last_read is not None and self._last_read[0] == key:
            return self._last_read[1]
        summed = self._sum(histories)
        self._last_read = (key, summed)
        return summed

    def _sum(
        self, histories: Sequence[Sequence[str]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        get = self.rows.get
        users = len(histories)
        rec = np.full((users, self.recent), -1, dtype=np.int64)
        for b, history in enumerate(histories):
            newest_first = [get(item) for item in history[: -self.recent - 1 : -1]]
            rec[b, : len(newest_first)] = newest_first
        rec = self._held_rows(rec)
        recency = self.recency ** np.arange(self.recent, dtype=np.float64)[None, :]
        weights = recency * self._inverse_counts(rec)
        # every (user, recent item, neighbour slot) at once; -1 rows and slots weigh 0; the
        # work is users x recent x M, whatever the catalog size
        held = np.maximum(rec, 0)
        nbr = self._nbr[held].astype(np.int64)  # (users, recent, M)
        part = self._wt[held] * weights[:, :, None] * self._inverse_counts(nbr)
        live = part > 0
        owner = np.broadcast_to(np.arange(users, dtype=np.int64)[:, None, None], nbr.shape)
        keys, where = np.unique(owner[live] << _SHIFT | nbr[live], return_inverse=True)
        if not len(keys):
            return None
        sums = np.bincount(where, part[live], minlength=len(keys))
        first = np.flatnonzero(np.r_[True, np.diff(keys >> _SHIFT) != 0])
        top = np.zeros(users, dtype=np.float64)
        top[keys[first] >> _SHIFT] = np.maximum.reduceat(sums, first)
        return keys, sums, top

    def neighbours_of(self, item: str) -> dict[str, float]:
        """The neighbours ``item``'s row holds with their decayed counts as of ``now``
        (for inspection and tests; the engine scores with :meth:`scores`)."""
        code = int(self._held_rows(np.array([self.rows.get(item)]))[0])
        if code < 0:
            return {}
        slots = np.flatnonzero(self._nbr[code] >= 0)
        scale = self._scale_now()
        ids = self.rows.ids
        return {ids[self._nbr[code, s]]: float(self._wt[code, s]) * scale for s in slots}

    def count_of(self, item: str) -> float:
        """``item``'s decayed action count as of ``now`` (0 when never counted)."""
        code = int(self._held_rows(np.array([self.rows.get(item)]))[0])
        return 0.0 if code < 0 else float(self._count[code]) * self._scale_now()

    def to_bytes(self) -> bytes:
        """The table as one ``.npz`` blob: ids, rows, counts decayed to ``now`` (so any later
        half-life continues from them), for artifacts and snapshots. Items are numbered by
        their position in ``ids`` (the rows held, in row order), not by row, so the file
        reads into any row map."""
        held = np.flatnonzero(self._held)
        position = np.full(len(self._held), -1, dtype=np.int64)
        position[held] = np.arange(len(held))
        nbr = self._nbr[held].astype(np.int64)
        nbr = np.where(nbr >= 0, position[np.maximum(nbr, 0)], -1)
        scale = self._scale_now()
        buffer = io.BytesIO()
        np.savez(
            buffer,
            ids=np.array([self.rows.ids[row] for row in held.tolist()], dtype=np.str_),
            neighbours=nbr.astype(np.int32),
            pairs=np.where(nbr >= 0, self._wt[held] * np.float32(scale), 0).astype(np.float32),
            counts=self._count[held] * scale,
            now=np.int64(self.now),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, **params: Any) -> CoVisitation:
        """Read :meth:`to_bytes`' blob; ``params`` (window, neighbours, …, ``rows``) as for
        the constructor. Rows wider than ``neighbours`` keep their strongest entries; items
        whose row in the map is ``max_items`` or more are dropped with every pair that
        points at them."""
        covis = cls(**params)
        with np.load(io.BytesIO(data), allow_pickle=False) as blob:
            if "neighbours" not in blob:
                raise ValueError(
                    "co-visitation file is the dense format of an older `streamrec train`: "
                    "train again to write the top-M table"
                )
            ids, nbr, wt = blob["ids"].tolist(), blob["neighbours"], blob["pairs"]
            counts, now = blob["counts"], int(blob["now"])
        row_of = covis.rows.add(ids)  # file position -> row here
        row_of[row_of >= covis.max_items] = -1
        kept = row_of >= 0
        nbr = nbr.astype(np.int64)
        nbr = np.where(nbr >= 0, row_of[np.maximum(nbr, 0)], -1)[kept]
        wt = np.where(nbr >= 0, wt[kept], 0)  # pairs with dropped items: empty slots
        order = np.argsort(-wt, axis=1, kind="stable")[:, : covis.neighbours]
        nbr = np.take_along_axis(np.where(wt > 0, nbr, -1), order, axis=1)
        wt = np.take_along_axis(wt, order, axis=1)
        rows = row_of[kept]
        covis._grow(int(rows.max()) + 1 if len(rows) else 1)
        width = nbr.shape[1] if len(rows) else 0
        covis._nbr[rows, :width] = nbr
        covis._wt[rows, :width] = wt
        covis._count[rows] = counts[kept]
        covis._refresh_inverse(rows)
        covis._held[rows] = True
        covis._items = len(rows)
        covis.now = covis._anchor = now
        return covis

    def snapshot(self) -> bytes:
        """:meth:`to_bytes` (the checkpoint side of :mod:`.statistics`)."""
        return self.to_bytes()

    def restore(self, data: bytes) -> None:
        """Replace the table with a :meth:`snapshot`, keeping these parameters and row map."""
        params = {
            "rows": self.rows,
            "window": self.window,
            "recent": self.recent,
            "recency": self.recency,
            "power": self.power,
            "neighbours": self.neighbours,
            "half_life_s": self.half_life_ms / 1000.0,
            "max_items": self.max_items,
        }
        self.__dict__.update(CoVisitation.from_bytes(data, **params).__dict__)

    def save(self, path: Path | str) -> None:
        """Write :meth:`to_bytes` to ``path`` (``covis.npz`` in the artifacts)."""
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: Path | str, **params: Any) -> CoVisitation:
        """Read :meth:`save`'s file; ``params`` as for :meth:`from_bytes`."""
        return cls.from_bytes(Path(path).read_bytes(), **params)

    def _weights(self, ts: np.ndarray) -> np.ndarray:
        """Each action's count in the table's scale, advancing ``now`` (and rescaling the
        table when the anchor falls 32 half-lives behind)."""
        if self.half_life_ms <= 0:
            self.now = max(self.now, int(ts.max()))
            return np.ones(len(ts), dtype=np.float64)
        if self.now < 0:
            self.now = self._anchor = int(ts[0])
        # a ts far ahead (µs by mistake, 2^63) moves the clock 32 half-lives at most per
        # batch, as for popularity: old counts shrink by 2^-32 and keep their order
        ts = np.minimum(ts, self.now + int(_RESCALE_HALF_LIVES * self.half_life_ms))
        self.now = max(self.now, int(ts.max()))
        if self.now - self._anchor > _RESCALE_HALF_LIVES * self.half_life_ms:
            factor = 2.0 ** ((self._anchor - self.now) / self.half_life_ms)
            self._wt *= np.float32(factor)
            self._count *= factor
            self._inv *= factor**-self.power
            self._anchor = self.now
        return np.exp2((ts - self._anchor) / self.half_life_ms)

    def _scale_now(self) -> float:
        if self.half_life_ms <= 0 or self.now < 0:
            return 1.0
        return float(2.0 ** ((self._anchor - self.now) / self.half_life_ms))

    def _insert(self, rows: np.ndarray, cols: np.ndarray, add: np.ndarray) -> None:
        """Add ``add[j]`` to cell (``rows[j]``, ``cols[j]``) (the cells distinct): onto the
        slot that holds ``cols[j]``, else into the row's weakest slots, strongest newcomer
        first, each only if at least what it replaces (a row stays its top M)."""
        held = self._nbr[rows] == cols[:, None]
        found = held.any(axis=1)
        self._wt[rows[found], held[found].argmax(axis=1)] += add[found].astype(np.float32)
        new = ~found
        if not new.any():
            return
        rows, cols, add = rows[new], cols[new], add[new]
        order = np.lexsort((-add, rows))  # by row, then strongest first
        rows, cols, add = rows[order], cols[order], add[order]
        start = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        rank = np.arange(len(rows)) - np.repeat(start, np.diff(np.r_[start, len(rows)]))
        keep = rank < self.neighbours
        rows, cols, add, rank = rows[keep], cols[keep], add[keep], rank[keep]
        weakest = np.argsort(self._wt[rows], axis=1, kind="stable")
        slot = weakest[np.arange(len(rows)), rank]
        take = add >= self._wt[rows, slot]
        rows, slot = rows[take], slot[take]
        self._nbr[rows, slot] = cols[take]
        self._wt[rows, slot] = add[take]

    def _inverse_counts(self, codes: np.ndarray) -> np.ndarray:
        """``count^-power`` of each code; 0 for -1 and for items never acted on."""
        return np.where(codes >= 0, self._inv[np.maximum(codes, 0)], 0.0)

    def _refresh_inverse(self, codes: np.ndarray) -> None:
        """Keep ``count^-power`` of the given codes current (kept per item so scoring only
        gathers: counts change at commits, a pow over the catalog per call was O(N))."""
        count = self._count[codes]
        self._inv[codes] = np.where(count > 0, np.maximum(count, 1e-300) ** -self.power, 0.0)

    def _code_of(self, item: str) -> int:
        """The item's row, counted from now on; -1 when its row is ``max_items`` or more."""
        code = self.rows.row(item)
        if code >= self.max_items:
            return -1
        if code >= len(self._count):
            self._grow(max(64, min(max(2 * len(self._count), code + 1), self.max_items)))
        if not self._held[code]:
            self._held[code] = True
            self._items += 1
        return code

    def _held_rows(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` of the map with -1 for those beyond this table (never counted here)."""
        return np.where((rows >= 0) & (rows < len(self._count)), rows, -1)

    def _grow(self, size: int) -> None:
        n = len(self._count)
        held = np.zeros(size, dtype=bool)
        held[:n] = self._held
        self._held = held
        nbr = np.full((size, self.neighbours), -1, dtype=np.int32)
        nbr[:n] = self._nbr
        wt = np.zeros((size, self.neighbours), dtype=np.float32)
        wt[:n] = self._wt
        count = np.zeros(size, dtype=np.float64)
        count[:n] = self._count
        inv = np.zeros(size, dtype=np.float64)
        inv[:n] = self._inv
        self._nbr, self._wt, self._count, self._inv = nbr, wt, count, inv
