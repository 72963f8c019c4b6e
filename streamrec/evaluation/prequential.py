"""Prequential (test-then-train) replay of a recorded stream through several systems at once.

For each held-out event the user's *current* recommendations — the list emitted after that
user's previous event, or the system's cold list for a user never seen — are scored against
the item the user interacts with now; only then does the event count as applied. Events go
through each system in micro-batches of consecutive events (the engine is fast only when
batched), in stream order.

Within a batch, no list that is scored may have seen the event it is scored on. Each
system therefore keeps two kinds of knowledge apart:

* a user's own history is exact per event: the list emitted after event *i* is computed
  from that user's state right after *i*, even when the same user acts again later in the
  same batch (``Engine.process`` snapshots each event's user state; baselines read the
  history prefix ``Batch.after`` gives them);
* global statistics (popularity, co-occurrence counts) move only *between* batches: the
  lists of a batch see them as of the batch start, as a serving system does whose counts
  lag by one micro-batch.

A system here is anything with the small :class:`System` interface: the engine itself
(:mod:`streamrec.evaluation.variants`, which calls ``Engine.process`` exactly as the Faust
agent does) or a baseline (:mod:`streamrec.evaluation.baselines`). All systems see the same
batches in the same order, so their per-event outcomes pair up for the bootstrap.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from streamrec.evaluation.metrics import MISS
from streamrec.streams.wire import Event


class Vocab:
    """Dense indices for string ids, in order of first appearance (deterministic)."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        for item_id in ids:
            self.add(item_id)

    def add(self, key: str) -> int:
        """The index of ``key``, adding it when new."""
        found = self.index.get(key)
        if found is None:
            found = self.index[key] = len(self.ids)
            self.ids.append(key)
        return found

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Stream:
    """A recorded stream in memory: the events plus their dense-index columns."""

    events: list[Event]
    users: np.ndarray  # int64 user index
    items: np.ndarray  # int64 item index
    saves: np.ndarray  # bool: action == "save"
    ts: np.ndarray  # int64 ms

    @classmethod
    def encode(cls, events: Sequence[Event], users: Vocab, items: Vocab) -> Stream:
        """Index ``events`` with the shared vocabularies (adding new ids to them)."""
        return cls(
            events=list(events),
            users=np.fromiter((users.add(e.user_id) for e in events), np.int64, len(events)),
            items=np.fromiter((items.add(e.item_id) for e in events), np.int64, len(events)),
            saves=np.fromiter((e.action == "save" for e in events), bool, len(events)),
            ts=np.fromiter((e.ts for e in events), np.int64, len(events)),
        )

    def __len__(self) -> int:
        return len(self.events)

    def micro_batches(self, max_batch: int) -> list[tuple[int, int]]:
        """``[start, stop)`` ranges of at most ``max_batch`` consecutive events."""
        return [(a, min(a + max_batch, len(self))) for a in range(0, len(self), max_batch)]

    def has_next(self) -> np.ndarray:
        """Per event: whether the same user has a later event in this stream."""
        later = np.ones(len(self.users), dtype=bool)
        _, last = np.unique(self.users[::-1], return_index=True)
        later[len(self.users) - 1 - last] = False
        return later


@dataclass(frozen=True)
class Batch:
    """One micro-batch: a view of ``stream[start:stop]``; ``after[j]`` is the length of the
    user's history (in :class:`History`) right after the batch's ``j``-th event."""

    stream: Stream
    start: int
    stop: int
    after: np.ndarray

    @property
    def events(self) -> list[Event]:
        return self.stream.events[self.start : self.stop]

    @property
    def users(self) -> np.ndarray:
        return self.stream.users[self.start : self.stop]

    @property
    def items(self) -> np.ndarray:
        return self.stream.items[self.start : self.stop]

    @property
    def saves(self) -> np.ndarray:
        return self.stream.saves[self.start : self.stop]

    @property
    def ts(self) -> np.ndarray:
        return self.stream.ts[self.start : self.stop]

    def __len__(self) -> int:
        return self.stop - self.start


class History:
    """What every user did so far (warm-up and test), in order; the baselines read it.

    The replay applies each batch here *before* the systems process it; a system reads a
    user's state after the batch's ``j``-th event as the prefix ``items[user][:after[j]]``.
    ``first[user][item]`` is the position of the user's first action on ``item``, so "had the
    user seen it by then" is ``first < after[j]`` without copying sets.
    """

    def __init__(self) -> None:
        self.items: dict[int, list[int]] = {}
        self.first: dict[int, dict[int, int]] = {}

    def apply(self, stream: Stream, start: int, stop: int) -> Batch:
        """Append ``stream[start:stop]`` and return it as a batch."""
        after = np.empty(stop - start, dtype=np.int64)
        users = stream.users[start:stop].tolist()
        items = stream.items[start:stop].tolist()
        for j, (user, item) in enumerate(zip(users, items, strict=True)):
            mine = self.items.setdefault(user, [])
            self.first.setdefault(user, {}).setdefault(item, len(mine))
            mine.append(item)
            after[j] = len(mine)
        return Batch(stream, start, stop, after)

    def length(self, user: int) -> int:
        """How many events the user has so far."""
        return len(self.items.get(user, ()))

    def seen_by(self, user: int, length: int) -> list[int]:
        """Distinct items of the user's first ``length`` events."""
        return [item for item, pos in self.first.get(user, {}).items() if pos < length]


class System(Protocol):
    """What the replay needs of a recommender: its cold list and batched processing."""

    name: str

    def cold_items(self) -> np.ndarray:
        """Item indices a user never seen would be shown now (best first)."""

    def process(self, batch: Batch, want: np.ndarray) -> list[np.ndarray | None]:
        """Apply the batch; per event, the item indices (best first) recommended after it
        where ``want`` is true (elsewhere ``None`` is allowed)."""

    def end_warmup(self) -> None:
        """Called once between warm-up and the held-out stream."""

    def digest(self) -> str:
        """Hex hash of every recommendation emitted so far (determinism check).

        A system that shares its work with others (one engine replay for several variants)
        may expose ``last_seconds``: the compute time of its last ``process`` call as if it
        ran alone; the replay then reports that instead of the wall time of the call."""


@dataclass
class Outcome:
    """Per-system result of the held-out replay, aligned with the test stream's events."""

    name: str
    ranks: np.ndarray  # int32, 0-based rank of the target in the scored list, MISS if absent
    latency_s: np.ndarray  # wall time of the batch that applied the event (freshness)
    batch_s: np.ndarray  # wall time of each held-out batch (total compute)
    covered: np.ndarray  # bool per item: appeared in a scored top-k list
    digest: str
    traces: dict[int, np.ndarray] = field(default_factory=dict)  # test position -> emitted list


@dataclass
class Replay:
    """Everything the metrics, bootstrap, drift and report need from one replay."""

    test: Stream
    history_length: np.ndarray  # per test event: the user's earlier events (warm-up included)
    outcomes: dict[str, Outcome]
    users: Vocab
    items: Vocab
    batches: int


def replay(
    systems: Sequence[System],
    test: Stream,
    *,
    warmup: Stream | None,
    history: History,
    users: Vocab,
    items: Vocab,
    max_batch: int,
    max_k: int,
    coverage_k: int = 10,
    track: Callable[[int], bool] | None = None,
    advance: Callable[[int], None] | None = None,
) -> Replay:
    """Warm up (apply only, nothing scored), then replay ``test`` test-then-train through
    every system.

    ``track(user)`` selects users whose emitted lists are kept (for drift analysis);
    ``advance(n)`` is told of each processed batch (progress bars).
    """
    current: list[dict[int, np.ndarray]] = [{} for _ in systems]
    if warmup is not None and len(warmup):
        # the list a user has when the held-out stream starts: emitted after their last
        # warm-up event (only users who act again in the held-out stream need one)
        last = ~warmup.has_next() & np.isin(warmup.users, test.users)
        for start, stop in warmup.micro_batches(max_batch):
            batch = history.apply(warmup, start, stop)
            for system, cur in zip(systems, current, strict=True):
                emitted = system.process(batch, last[start:stop])
                for pos, user in enumerate(batch.users.tolist()):
                    if last[start + pos]:
                        cur[user] = _required(emitted[pos])
            if advance is not None:
                advance(stop - start)
    for system in systems:
        system.end_warmup()

    n = len(test)
    want = test.has_next()
    ranks = [np.full(n, MISS, dtype=np.int32) for _ in systems]
    latency = [np.zeros(n) for _ in systems]
    batch_times: list[list[float]] = [[] for _ in systems]
    covered = [np.zeros(len(items), dtype=bool) for _ in systems]
    traces: list[dict[int, np.ndarray]] = [{} for _ in systems]
    tracked = np.zeros(n, dtype=bool)
    if track is not None:
        tracked = np.fromiter((track(u) for u in test.users.tolist()), bool, n)
    history_length = np.zeros(n, dtype=np.int64)
    bounds = test.micro_batches(max_batch)
    for start, stop in bounds:
        batch_users = test.users[start:stop].tolist()
        colds = [
            system.cold_items() if any(u not in cur for u in batch_users) else None
            for system, cur in zip(systems, current, strict=True)
        ]
        batch = history.apply(test, start, stop)
        history_length[start:stop] = batch.after - 1
        for s, system in enumerate(systems):
            began = time.perf_counter()
            emitted = system.process(batch, want[start:stop])
            took = time.perf_counter() - began
            own = getattr(system, "last_seconds", None)  # shared replays time each variant
            if own is not None:
                took = own
            latency[s][start:stop] = took
            batch_times[s].append(took)
            cur, cold = current[s], colds[s]
            for j, user in enumerate(batch_users):
                pos = start + j
                scored = cur.get(user, cold)
                top = _required(scored)[:max_k]
                where = np.flatnonzero(top == test.items[pos])
                if len(where):
                    ranks[s][pos] = where[0]
                covered[s][top[:coverage_k]] = True
                if want[pos]:
                    cur[user] = kept = _required(emitted[j])
                    if tracked[pos]:
                        traces[s][pos] = kept
        if advance is not None:
            advance(stop - start)
    outcomes = {
        system.name: Outcome(
            system.name,
            ranks[s],
            latency[s],
            np.asarray(batch_times[s]),
            covered[s],
            system.digest(),
            traces[s],
        )
        for s, system in enumerate(systems)
    }
    return Replay(test, history_length, outcomes, users, items, len(bounds))


def _required(rec: np.ndarray | None) -> np.ndarray:
    if rec is None:
        raise RuntimeError("a system returned no recommendations where they are scored")
    return rec
