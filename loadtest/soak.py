"""Soak: one worker's resident memory (RSS) over many events, and its stream rate with and
without HTTP GET load.

What grows in a worker, and its bound (see README "Memory"):

- user state and latest recommendations live in RocksDB tables on disk; in memory each
  table partition's store holds at most 2 memtables of ``worker_rocksdb_write_buffer_mb``
  and a ``worker_rocksdb_cache_mb`` block cache (Faust's defaults were 3 x 64 MB and 2 GB
  per partition, which let RSS climb towards gigabytes);
- per user, the state is bounded by ``engine_recent_size``, ``engine_seen_size`` and
  ``engine_applied_ids`` (the applied-id list), whatever the user's event count;
- the engine's recently-popular counts keep one slot per distinct item id seen, and
  co-visitation at most ``engine_covis_max_items`` rows of ``8 x engine_covis_neighbours + 16``
  bytes (plus the item-id map; ``python -m loadtest.bench_covis`` measures it at 10^6 items).

The soak starts the local broker (or uses ``STREAMREC_KAFKA_BOOTSTRAP``), trains the quick
MovieLens-100k models once (``out/soak``), starts a worker on fresh topics and produces
``--events`` synthetic events over ``--users`` users (the catalog's items, the current
time), keeping the worker's backlog near ``--backlog``. It prints the worker's RSS every
``--every`` processed events. With ``--http-phase S`` it then measures events/s for S
seconds without HTTP load and S seconds under ``--http-clients`` concurrent GET
/recommendations clients (another process), and prints the ratio.

Run: ``python -m loadtest.soak --events 1000000`` (figures depend on what else runs on the
machine: read them with the load average printed).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import aiohttp
import numpy as np
import requests
from kafka import KafkaProducer

from streamrec.config import Settings
from streamrec.demo import prepare_data, start_kafka, start_worker, step, train
from streamrec.streams.core.artifacts import Artifacts
from streamrec.streams.wire import Event, encode_event

OUT = Path("out/soak").absolute()


def worker_pid(app_id: str) -> int:
    """The pid of the ``streamrec worker`` started with ``--app-id app_id``."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"worker" in args and app_id.encode() in args:
                return int(entry.name)
    raise SystemExit(f"soak: no worker process with app id {app_id}")


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def processed(url: str) -> int:
    """Events the worker has turned into recommendations (its metrics counter)."""
    for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("streamrec_events_processed_total "):
            return int(float(line.split()[1]))
    return 0


class Producer(threading.Thread):
    """Produces ``total`` events, never more than ``backlog`` ahead of what the worker at
    ``url`` has processed."""

    def __init__(self, bootstrap: str, topic: str, url: str, args: argparse.Namespace,
                 items: list[str]) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.kafka = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1)
        self.topic, self.url, self.args, self.items = topic, url, args, items
        self.sent = 0

    def run(self) -> None:
        rng = random.Random(15)
        users, items = self.args.users, self.items
        while self.sent < self.args.events:
            try:
                ahead = self.sent - processed(self.url)
            except requests.RequestException:  # the worker has stopped: the run is over
                return
            if ahead >= self.args.backlog:
                time.sleep(0.2)
                continue
            for _ in range(min(2000, self.args.events - self.sent)):
                user = f"s{int(rng.paretovariate(0.8)) % users}"
                item = items[min(int(rng.paretovariate(1.0)), len(items)) - 1]
                action = "save" if rng.random() < 0.2 else "click"
                event = Event(f"soak-{self.sent}", user, item, action, int(time.time() * 1000))
                self.kafka.send(self.topic, key=user.encode(), value=encode_event(event))
                self.sent += 1
        self.kafka.flush()


def get_load(
    url: str, users: int, clients: int, seconds: float, out: multiprocessing.Queue
) -> None:
    """``clients`` concurrent GET /recommendations loops for ``seconds``; puts (ok, other)."""

    async def loop(session: aiohttp.ClientSession, counts: list[int], end: float) -> None:
        rng = random.Random()
        while time.monotonic() < end:
            async with session.get(f"{url}/recommendations/s{rng.randrange(users)}") as r:
                await r.read()
                counts[0 if r.status == 200 else 1] += 1

    async def main() -> None:
        counts = [0, 0]
        end = time.monotonic() + seconds
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(loop(session, counts, end) for _ in range(clients)))
        out.put(tuple(counts))

    asyncio.run(main())


def rate(url: str, seconds: float) -> float:
    """Events/s the worker processes over ``seconds``."""
    start, t0 = processed(url), time.monotonic()
    time.sleep(seconds)
    return (processed(url) - start) / (time.monotonic() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--every", type=int, default=50_000, help="print RSS every N events")
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--http-phase", type=float, default=0.0, help="seconds per phase")
    parser.add_argument("--http-clients", type=int, default=32)
    args = parser.parse_args()

    settings = Settings()
    OUT.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        step("Kafka")
        bootstrap = start_kafka(stack, settings)
        step("quick MovieLens-100k models")
        train_part, _ = prepare_data(OUT)
        artifacts = OUT / "artifacts"
        train(train_part, artifacts)
        items = [str(i) for i in np.load(Artifacts(artifacts).item_vectors)["ids"].tolist()]
        step("worker")
        worker = start_worker(stack, bootstrap, artifacts, OUT, args.partitions)
        pid = worker_pid(worker.app_id)
        print(f"worker pid {pid}, RSS {rss_mb(pid):.0f} MB when ready, load {os.getloadavg()}")
        Producer(bootstrap, worker.topics["events"], worker.url, args, items).start()
        step(f"soak: {args.events:,} events over {args.users:,} users")
        print(f"{'events':>10} {'RSS MB':>8} {'events/s':>9}")
        t0 = time.monotonic()
        mark, last, done, peak = args.every, (0, t0), 0, 0.0
        stop_at = args.events // 2 if args.http_phase else args.events
        while done < stop_at:
            time.sleep(1.0)
            done = processed(worker.url)
            peak = max(peak, rss_mb(pid))
            if done >= mark or done >= stop_at:
                now = time.monotonic()
                speed = (done - last[0]) / (now - last[1])
                print(f"{done:>10,} {rss_mb(pid):>8.0f} {speed:>9.0f}", flush=True)
                last, mark = (done, now), mark + args.every
        if args.http_phase:
            step(f"stream rate without and with {args.http_clients} GET clients")
            quiet = rate(worker.url, args.http_phase)
            result: multiprocessing.Queue = multiprocessing.Queue()
            load = multiprocessing.Process(
                target=get_load,
                args=(worker.url, args.users, args.http_clients, args.http_phase, result),
            )
            load.start()
            busy = rate(worker.url, args.http_phase)
            load.join()
            ok, other = result.get()
            print(f"events/s without HTTP load: {quiet:.0f}")
            print(f"events/s with GET load:     {busy:.0f} ({ok / args.http_phase:.0f} GET/s "
                  f"answered 200, {other / args.http_phase:.0f}/s refused or other)")  # fmt: skip
            print(f"ratio with/without: {busy / quiet:.2f}")
        elapsed = time.monotonic() - t0
        print(f"{processed(worker.url):,} events in {elapsed:.0f}s; RSS now {rss_mb(pid):.0f} MB, "
              f"peak {peak:.0f} MB; load {os.getloadavg()}")  # fmt: skip


if __name__ == "__main__":
    main()
