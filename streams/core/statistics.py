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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class StatsDelta:
    """One batch's newly applied events, in event order, as every statistic counts them.

    Event ``j`` acted on ``items[j]`` at ``ts[j]`` (ms) with the update rule's ``weights[j]``;
    ``previous[j]`` are the user's items just before it, oldest first (what co-visitation
    pairs it with; empty when no statistic needs them).
    """

    items: tuple[str, ...] = ()
    ts: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()
    previous: tuple[tuple[str, ...], ...] = ()

    def __len__(self) -> int:
        return len(self.items)

    def to_map(self) -> dict[str, Any]:
        """A msgpack-friendly map (lists of str, int, float)."""
        return {
            "items": list(self.items),
            "ts": list(self.ts),
            "weights": list(self.weights),
            "previous": [list(p) for p in self.previous],
        }

    @classmethod
    def from_map(cls, data: dict[str, Any]) -> StatsDelta:
        """Read :meth:`to_map`'s output; columns of different lengths are an error."""
        delta = cls(
            tuple(str(i) for i in data["items"]),
            tuple(int(t) for t in data["ts"]),
            tuple(float(w) for w in data["weights"]),
            tuple(tuple(str(i) for i in p) for p in data["previous"]),
        )
        if not len(delta.items) == len(delta.ts) == len(delta.weights) == len(delta.previous):
            raise ValueError("stats delta: items, ts, weights and previous differ in length")
        return delta


class Statistic(Protocol):
    """A shared statistic: it changes only when a batch's delta is committed to it."""

    def commit(self, delta: StatsDelta) -> None: ...


class SharedStats:
    """The engine's shared statistics, committed together (see the module doc)."""

    def __init__(self, statistics: Sequence[Statistic]) -> None:
        self.statistics = list(statistics)

    def commit(self, delta: StatsDelta) -> None:
        """Apply one batch's delta to every statistic."""
        if len(delta):
            for statistic in self.statistics:
                statistic.commit(delta)
