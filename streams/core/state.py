"""Per-user state: what the engine remembers about one user between events.

It lives in a RocksDB-backed Faust table whose changelog topic is the source of truth, so
it has to be small and plain: :meth:`UserState.to_map` gives a msgpack-friendly map (str,
int, float, lists; no numpy) and :meth:`UserState.from_map` reads it back exactly.

Bounds (all per user, set by ``EngineConfig``):

- ``recent``: the last ``recent_size`` actions as ``(item_id, action, ts)``, oldest first;
  the reranker features look at its newest entries.
- ``seen``: the last ``seen_size`` *distinct* items the user interacted with, oldest first;
  they are never recommended back. A user with more distinct items than that may be shown
  an item from before the oldest remembered one again (default 1000: more than any
  MovieLens-1M user has in the held-out part, ~9 KB of msgpack at most).
- ``applied``: the last ``applied_ids`` applied events as ``(event_id, ts)``, for
  idempotence. When one falls off, ``applied_floor_ts`` rises to its ts, and any event with
  ts at or below the floor counts as already applied: a redelivery of a forgotten event is
  never applied twice. The price: a *new* event at or below the floor is dropped too — a
  late event older than the user's last ``applied_ids`` events, or the 257th+ event of one
  user sharing one millisecond (default bound 256, ~10 KB of ids at worst).
- ``vectors``/``masses``/``rule_ts``: the update rule's vectors (one for ``decayed``, up to
  ``interests`` centroids for ``multi``), their decayed weight, and the event time they are
  decayed to. Floats are rounded to float32 so state round-trips bit-exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streamrec.streams.wire import Event

#: Version of the map layout, so a changelog written by an older layout is recognised.
STATE_VERSION = 1


@dataclass(slots=True)
class UserState:
    """Everything the engine keeps for one user (see the module doc for the bounds)."""

    recent: list[tuple[str, str, int]] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    vectors: list[list[float]] = field(default_factory=list)
    masses: list[float] = field(default_factory=list)
    rule_ts: int = -1
    n_events: int = 0
    n_saves: int = 0
    n_known: int = 0  # events on items the index knew (the ones that moved the vectors)
    first_ts: int = -1
    prev_ts: int = -1  # ts of the event before the last one, for the session-gap feature
    last_ts: int = -1
    applied: list[tuple[str, int]] = field(default_factory=list)
    applied_floor_ts: int = -1

    def is_applied(self, event: Event) -> bool:
        """Whether this event was already applied (so applying it again must be skipped)."""
        if event.ts > self.last_ts:  # newer than every applied event: the common case
            return False
        if event.ts <= self.applied_floor_ts:
            return True
        # A redelivery carries the same id and ts; the tuple test runs in C.
        return (event.event_id, event.ts) in self.applied

    def record(self, event: Event, *, recent_size: int, seen_size: int, applied_ids: int) -> None:
        """Book-keep one newly applied event: ring, seen items, counters, applied ids.

        The update rule moves the vectors separately (it needs the item's vector).
        """
        self.recent.append((event.item_id, event.action, event.ts))
        del self.recent[:-recent_size]
        if seen_size > 0:
            if event.item_id in self.seen:
                self.seen.remove(event.item_id)
            self.seen.append(event.item_id)
            del self.seen[:-seen_size]
        self.n_events += 1
        self.n_saves += event.action == "save"
        if self.first_ts < 0:
            self.first_ts = event.ts
        if event.ts >= self.last_ts:
            self.prev_ts, self.last_ts = self.last_ts, event.ts
        self.applied.append((event.event_id, event.ts))
        if len(self.applied) > applied_ids:
            evicted = self.applied[: len(self.applied) - applied_ids]
            del self.applied[: len(evicted)]
            self.applied_floor_ts = max(self.applied_floor_ts, *(ts for _, ts in evicted))

    @property
    def exclude(self) -> set[str]:
        """Items never to recommend back to this user: the seen items and the recent ring."""
        exclude = set(self.seen)
        exclude.update([item for item, _, _ in self.recent])
        return exclude

    def to_map(self) -> dict[str, Any]:
        """The msgpack-friendly map of this state (plain lists, ints and floats)."""
        return {
            "v": STATE_VERSION,
            "recent": [[item, action, ts] for item, action, ts in self.recent],
            "seen": list(self.seen),
            "vectors": [list(vec) for vec in self.vectors],
            "masses": list(self.masses),
            "rule_ts": self.rule_ts,
            "n_events": self.n_events,
            "n_saves": self.n_saves,
            "n_known": self.n_known,
            "first_ts": self.first_ts,
            "prev_ts": self.prev_ts,
            "last_ts": self.last_ts,
            "applied": [[event_id, ts] for event_id, ts in self.applied],
            "applied_floor_ts": self.applied_floor_ts,
        }

    @classmethod
    def from_map(cls, data: dict[str, Any]) -> UserState:
        """Read a map written by :meth:`to_map`; an unknown layout version is an error."""
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"user state layout v{data.get('v')} is not v{STATE_VERSION}")
        return cls(
            recent=[(str(item), str(action), int(ts)) for item, action, ts in data["recent"]],
            seen=list(data["seen"]),
            vectors=[[float(x) for x in vec] for vec in data["vectors"]],
            masses=[float(m) for m in data["masses"]],
            rule_ts=int(data["rule_ts"]),
            n_events=int(data["n_events"]),
            n_saves=int(data["n_saves"]),
            n_known=int(data["n_known"]),
            first_ts=int(data["first_ts"]),
            prev_ts=int(data["prev_ts"]),
            last_ts=int(data["last_ts"]),
            applied=[(str(event_id), int(ts)) for event_id, ts in data["applied"]],
            applied_floor_ts=int(data["applied_floor_ts"]),
        )
