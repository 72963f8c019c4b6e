"""The shared statistics: what the engine knows across users, changed at one point per batch.

User state is per user and exact per event; popularity, co-visitation and anything added
later are *shared*: every list of a micro-batch reads them as they stand, so the only way to
keep a list from seeing events after its own is to change them at one place, at one moment.
Every statistic therefore takes the batch through :class:`StatsDelta`, the batch's newly
applied events as one object, and :meth:`SharedStats.commit` applies it to all of them.

``Engine.process`` stages the delta while it applies the events to the user states and
commits it either before retrieval (serving's freshest counts, ``popular_as_of="batch_end"``
with ``moment="after"``) or after the batch's lists are ranked (every other case): then each
list reads the statistics as of the batch start, strictly before its event. The committed
delta of the last batch is :attr:`Engine.last_delta` (plain data, :meth:`StatsDelta.to_map`),
so a worker can publish it for other workers to :meth:`~SharedStats.commit` too.

Across workers every event must count once, wherever its delta comes from: a crash between
publishing a batch's delta and storing its users' states makes the restarted worker apply the
batch again. Each delta entry therefore carries the event's :func:`event_key`, and with
``dedupe`` set :meth:`SharedStats.commit` drops keys it committed among the last ``dedupe``
(its own batches, other workers' deltas and redeliveries alike, whichever came first).
:meth:`SharedStats.snapshot` and :meth:`~SharedStats.restore` carry every statistic, those
keys and the event count through a checkpoint.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

from streamrec.streams.wire import pack, unpack


def event_key(user_id: str, event_id: str) -> int:
    """A 64-bit key of one event: event ids are unique per user, not across users."""
    digest = hashlib.blake2b(f"{user_id}\0{event_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True, slots=True)
class StatsDelta:
    """One batch's newly applied events, in event order, as every statistic counts them.

    Event ``j`` acted on ``items[j]`` at ``ts[j]`` (ms) with the update rule's ``weights[j]``;
    ``previous[j]`` are the user's items just before it, oldest first (what co-visitation
    pairs it with; empty when no statistic needs them); ``keys[j]`` is its
    :func:`event_key`.
    """

    items: tuple[str, ...] = ()
    ts: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()
    previous: tuple[tuple[str, ...], ...] = ()
    keys: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.items)

    def to_map(self) -> dict[str, Any]:
        """A msgpack-friendly map (lists of str, int, float)."""
        return {
            "items": list(self.items),
            "ts": list(self.ts),
            "weights": list(self.weights),
            "previous": [list(p) for p in self.previous],
            "keys": list(self.keys),
        }

    @classmethod
    def from_map(cls, data: dict[str, Any]) -> StatsDelta:
        """Read :meth:`to_map`'s output; columns of different lengths are an error."""
        delta = cls(
            tuple(str(i) for i in data["items"]),
            tuple(int(t) for t in data["ts"]),
            tuple(float(w) for w in data["weights"]),
            tuple(tuple(str(i) for i in p) for p in data["previous"]),
            tuple(int(k) for k in data["keys"]),
        )
        if len({len(getattr(delta, f.name)) for f in fields(cls)}) != 1:
            raise ValueError("stats delta: items, ts, weights, previous and keys differ in length")
        return delta

    def select(self, rows: Sequence[int]) -> StatsDelta:
        """The entries ``rows``, in that order."""
        return StatsDelta(*(tuple(getattr(self, f.name)[j] for j in rows) for f in fields(self)))


class Statistic(Protocol):
    """A shared statistic: it changes only when a batch's delta is committed to it, and it
    can be written to bytes and read back in place (checkpoints)."""

    def commit(self, delta: StatsDelta) -> None: ...
    def snapshot(self) -> bytes: ...
    def restore(self, data: bytes) -> None: ...


class SharedStats:
    """The engine's shared statistics, committed together (see the module doc)."""

    def __init__(self, statistics: Sequence[Statistic], *, dedupe: int = 0) -> None:
        """``dedupe``: how many of the last committed event keys are remembered (0: none;
        every delta is taken as new)."""
        self.statistics = list(statistics)
        #: Events committed so far (after deduplication; the training seed not counted).
        self.events = 0
        self._recent: deque[int] = deque(maxlen=dedupe or None)
        self._seen: set[int] = set()
        self.dedupe = dedupe

    def commit(self, delta: StatsDelta) -> StatsDelta:
        """Apply one batch's delta to every statistic; returns what was applied (the delta
        less the events already committed, when deduplicating)."""
        if self.dedupe and len(delta):
            delta = delta.select(self._new_rows(delta.keys))
        if len(delta):
            for statistic in self.statistics:
                statistic.commit(delta)
            self.events += len(delta)
        return delta

    def _new_rows(self, keys: Sequence[int]) -> list[int]:
        rows = []
        recent, seen = self._recent, self._seen
        for j, key in enumerate(keys):
            if key in seen:
                continue
            if len(recent) == recent.maxlen:
                seen.discard(recent[0])
            recent.append(key)
            seen.add(key)
            rows.append(j)
        return rows

    def snapshot(self) -> bytes:
        """Every statistic, the event count and the remembered keys, as one msgpack map."""
        return pack(
            {
                "kinds": [type(s).__name__ for s in self.statistics],
                "statistics": [s.snapshot() for s in self.statistics],
                "events": self.events,
                "keys": list(self._recent),
            }
        )

    def restore(self, data: bytes) -> None:
        """Replace everything with a :meth:`snapshot`; ``ValueError`` (nothing changed) when
        it holds other kinds of statistics (the engine settings changed)."""
        saved = unpack(data)
        kinds = [type(s).__name__ for s in self.statistics]
        if saved["kinds"] != kinds:
            raise ValueError(f"snapshot holds {saved['kinds']}, the engine keeps {kinds}")
        for statistic, blob in zip(self.statistics, saved["statistics"], strict=True):
            statistic.restore(blob)
        self.events = int(saved["events"])
        self._recent.clear()
        self._seen.clear()
        if self.dedupe:
            self._new_rows([int(k) for k in saved["keys"]])
