"""Co-visitation benchmark: memory and per-event CPU cost of the engine's top-M table.

A seeded Zipf-ish stream over ``--items`` items (every item acted on once first, in a random
order, so the table holds a row for each; then ``--events`` draws with popularity
``1 / rank^--zipf``, users continuing near their previous item half the time so pairs have
structure), fed through :meth:`CoVisitation.commit` in micro-batches of ``--batch`` events
exactly as the engine commits a batch's :class:`StatsDelta`. It prints:

- update cost: thread CPU time per applied event over the whole stream;
- score cost: thread CPU time per event of :meth:`CoVisitation.scores` for batches of
  ``--batch`` users, each with its last ``recent`` items and ``--candidates`` candidates;
- the table's array bytes (``nbytes``, ``bytes_per_item``) and the process RSS before the
  table and after (``/proc/self/status``; the item-id map and Python overhead included).

``--events-file`` replays a recorded stream (``*.msgpack``) instead, so the same figures can
be compared on a real stream. CPU time (``time.thread_time``) rather than wall time, so the
figures hold on a shared machine.

Run: ``python -m loadtest.bench_covis`` (defaults: 10^6 items, 2·10^6 events after the
first pass, M = 64).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from streamrec.streams.core.covis import CoVisitation
from streamrec.streams.core.statistics import StatsDelta
from streamrec.streams.recorded import read_events


class Table(Protocol):
    """What the benchmark drives: the engine's two calls into co-visitation."""

    def commit(self, delta: StatsDelta) -> None: ...

    def scores(
        self, histories: Sequence[Sequence[str]], candidates: Sequence[Sequence[str]]
    ) -> np.ndarray: ...


def rss_mb() -> float:
    """Resident set size of this process, MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthetic(
    items: int, events: int, users: int, zipf: float, seed: int
) -> Iterator[tuple[str, str, int]]:
    """(user, item, ts ms) in time order: one pass over every item, then Zipf draws."""
    rng = np.random.default_rng(seed)
    ts = 1_700_000_000_000
    for j, item in enumerate(rng.permutation(items)):
        yield f"u{j % users}", f"i{item}", ts + j
    ts += items
    weights = 1.0 / np.arange(1, items + 1) ** zipf
    cdf = np.cumsum(weights / weights.sum())
    ids = rng.permutation(items)  # popularity rank -> item id
    last = np.zeros(users, dtype=np.int64)
    for start in range(0, events, 65_536):
        n = min(65_536, events - start)
        who = rng.integers(0, users, n)
        rank = np.minimum(np.searchsorted(cdf, rng.random(n)), items - 1)
        near = rng.random(n) < 0.5
        step = rng.integers(1, 20, n)
        for k in range(n):  # half the time: a rank close to the user's previous one
            u = who[k]
            r = (last[u] + step[k]) % items if near[k] else rank[k]
            last[u] = r
            yield f"u{u}", f"i{ids[r]}", ts + start + k


def recorded(path: Path) -> Iterator[tuple[str, str, int]]:
    """(user, item, ts) of a recorded stream."""
    for event in read_events(path):
        yield event.user_id, event.item_id, event.ts


def measure(
    table: Table,
    stream: Iterator[tuple[str, str, int]],
    *,
    window: int,
    recent: int,
    batch: int,
    candidates: int,
    score_every: int,
    seed: int = 0,
) -> dict[str, float]:
    """Feed ``stream`` in batches of ``batch`` (each as one committed delta) and score a
    batch of ``batch`` users every ``score_every`` batches; CPU ms per event of each."""
    rng = np.random.default_rng(seed)
    history: defaultdict[str, deque[str]] = defaultdict(lambda: deque(maxlen=max(window, recent)))
    seen: list[str] = []
    users: list[str] = []
    update_s = score_s = 0.0
    updates = scored = 0
    pending: list[tuple[str, str, int]] = []

    def flush() -> None:
        nonlocal update_s, updates
        items, ts, previous = [], [], []
        for user, item, t in pending:
            if user not in history:
                users.append(user)
            mine = history[user]
            previous.append(tuple(list(mine)[-window:]))
            items.append(item)
            ts.append(t)
            mine.append(item)
        delta = StatsDelta(tuple(items), tuple(ts), (1.0,) * len(items), tuple(previous))
        started = time.thread_time()
        table.commit(delta)
        update_s += time.thread_time() - started
        updates += len(items)
        seen.extend(items[:: max(1, len(items) // 16)])
        pending.clear()

    for n, event in enumerate(stream, start=1):
        pending.append(event)
        if len(pending) == batch:
            flush()
            if (n // batch) % score_every == 0:
                picked = rng.choice(len(users), batch)
                hist = [list(history[users[u]])[-recent:] for u in picked]
                pool = rng.choice(len(seen), (batch, candidates))
                cand = [[seen[c] for c in row] for row in pool]
                started = time.thread_time()
                table.scores(hist, cand)
                score_s += time.thread_time() - started
                scored += batch
    if pending:
        flush()
    return {
        "events": float(updates),
        "update_ms_per_event": 1000 * update_s / max(updates, 1),
        "score_ms_per_event": 1000 * score_s / max(scored, 1),
        "scored_events": float(scored),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=2_000_000, help="after the first pass")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--events-file", type=Path, help="replay this recorded stream instead")
    parser.add_argument("--neighbours", type=int, default=64)
    parser.add_argument("--half-life-s", type=float, default=7_776_000.0)
    parser.add_argument("--window", type=int, default=3)
    parser.add_argument("--recent", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--score-every", type=int, default=8, help="batches between scorings")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    before = rss_mb()
    table = CoVisitation(
        window=args.window,
        recent=args.recent,
        neighbours=args.neighbours,
        half_life_s=args.half_life_s,
        max_items=max(args.items, 1),
    )
    stream = (
        recorded(args.events_file)
        if args.events_file
        else synthetic(args.items, args.events, args.users, args.zipf, args.seed)
    )
    figures = measure(
        table,
        stream,
        window=args.window,
        recent=args.recent,
        batch=args.batch,
        candidates=args.candidates,
        score_every=args.score_every,
        seed=args.seed,
    )
    after = rss_mb()
    ids = table.id_map_bytes()
    print(f"items counted      {len(table):,} (M = {table.neighbours} neighbours each)")
    print(f"events applied     {figures['events']:,.0f} in batches of {args.batch}")
    print(f"update             {figures['update_ms_per_event'] * 1000:.2f} µs CPU per event")
    print(
        f"score              {figures['score_ms_per_event'] * 1000:.2f} µs CPU per event "
        f"({args.candidates} candidates, {args.recent} recent items; "
        f"{figures['scored_events']:,.0f} events scored)"
    )
    print(
        f"table arrays       {table.nbytes / 2**20:,.1f} MiB ({table.bytes_per_item} B per item "
        "x rows allocated)"
    )
    print(f"item-id map        {ids / 2**20:,.1f} MiB ({ids / max(len(table), 1):.0f} B per item)")
    print(
        f"RSS                {before:,.1f} MiB before, {after:,.1f} MiB after (the benchmark's "
        "own user histories and candidate pool included)"
    )


if __name__ == "__main__":
    main()
