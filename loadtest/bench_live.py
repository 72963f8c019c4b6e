"""Overhead of live scoring per event, in process, beside the engine it rides on.

The worker's per-batch work around the engine gains: the applied-event check, reading each
user's last served list (here from a dict of msgpack bytes, as the ``recs`` table stores
them), ranking the event's item in it and updating the Prometheus counters. This times that
(``streams/live.py``) against ``Engine.process`` on the same micro-batches of MovieLens-100k
held-out events, with the served configuration (the artifacts' reranker), 1 thread, CPU time
of this thread.

Beside it, the same events replayed by a second engine the way the prequential evaluator
does (``moment="before"``: each event's list is built from the state just before it, with
the statistics as of its micro-batch's start) give the offline HR@10 of the same
configuration, over the same scored events and over all of them, to set against live HR@10.

Run: ``python -m loadtest.bench_live`` (artifacts and data of ``make demo`` in out/demo,
built when missing; ``--artifacts``/``--events`` to use others).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from streamrec.config import Settings
from streamrec.demo import prepare_data, train
from streamrec.streams.core.engine import PERSONALIZED, POPULAR
from streamrec.streams.core.hits import is_hit, rank_of
from streamrec.streams.core.loader import load_engine
from streamrec.streams.live import LiveConfig, LiveMetrics, Served, applied_flags, score_batch
from streamrec.streams.recorded import read_events
from streamrec.streams.wire import pack, unpack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, default=None)
    parser.add_argument("--events", type=Path, default=None, help="held-out stream")
    parser.add_argument("--count", type=int, default=20_000, help="events timed")
    parser.add_argument("--batch", type=int, default=256, help="micro-batch size")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    out = Path("out/demo").absolute()
    artifacts, events_file = args.artifacts, args.events
    if artifacts is None or events_file is None:
        out.mkdir(parents=True, exist_ok=True)
        train_part, test_part = prepare_data(out)
        artifacts = artifacts or out / "artifacts"
        events_file = events_file or test_part
        train(train_part, artifacts)
    settings = Settings(engine_threads=1, engine_device="cpu")
    engine = load_engine(artifacts, settings)
    events = []
    for event in read_events(events_file):
        events.append(event)
        if len(events) == args.count:
            break
    live = LiveMetrics(CollectorRegistry(), LiveConfig(tuple(settings.live_ks)))
    live.declare({"control": 1.0}, "control", (PERSONALIZED, POPULAR))
    offline = load_engine(artifacts, settings)
    offline_states: dict = {}
    offline_ranks: list[int] = []
    live_ranks: list[int] = []
    live_scored: list[bool] = []  # whether live scoring scored each event
    served_at: dict[str, int] = {}  # user -> the batch (its start) of their latest list
    same_batch: list[bool] = []  # whether the event's served list came from its own batch
    states: dict = {}
    stored: dict[str, bytes] = {}  # user -> packed latest recommendation, as table `recs`
    engine_s = live_s = 0.0
    scored = 0
    for start in range(0, len(events), args.batch):
        batch = events[start : start + args.batch]
        began = time.thread_time()
        applied = applied_flags(batch, states)
        flagged = time.thread_time()
        recs = engine.process(batch, states)
        processed = time.thread_time()
        served = {
            u: Served.of_map(unpack(stored[u]), "control")
            for u in {e.user_id for e in batch}
            if u in stored
        }
        scores, without = score_batch(
            batch, [e.ts / 1000 for e in batch], applied, served, recs, "control"
        )
        live.record(scores, without)
        done = time.thread_time()
        engine_s += processed - flagged
        live_s += (flagged - began) + (done - processed)
        scored += len(scores)
        live_ranks += [x.rank for x in scores]
        before = offline.process(batch, offline_states, moment="before")
        for event, is_new, rec in zip(batch, applied, before, strict=True):
            offline_ranks.append(rank_of(rec.items, event.item_id))
            live_scored.append(is_new and event.user_id in served_at)
            same_batch.append(served_at.get(event.user_id) == start)
            served_at[event.user_id] = start
        for rec in recs:  # the worker's own write-back, not part of live scoring
            stored[rec.user_id] = pack(rec.to_map())
    n = len(events)
    print(
        f"events {n:,} (batch {args.batch}, {scored:,} scored), engine "
        f"{engine_s / n * 1e6:.1f} us/event CPU, live scoring {live_s / n * 1e6:.2f} us/event "
        f"CPU = {100 * live_s / (engine_s + live_s):.2f} % of per-event CPU "
        f"(model {engine.model_version}, load {os.getloadavg()[0]:.1f})"
    )
    ranks, mask = np.array(offline_ranks), np.array(live_scored)
    live_hits = np.array([is_hit(r, 10) for r in live_ranks])
    hr_live = float(live_hits.mean())
    hr_same = float(np.mean((ranks[mask] >= 0) & (ranks[mask] < 10)))
    hr_all = float(np.mean((ranks >= 0) & (ranks < 10)))
    print(
        f"HR@10 live (served lists) {hr_live:.4f} over {len(live_ranks):,} events; prequential "
        f"(lists as of just before each event) {hr_same:.4f} over the same events, "
        f"{hr_all:.4f} over all {n:,}"
    )
    own = np.array(same_batch)[mask]  # of the scored events: list from the event's own batch
    offline_hits = (ranks[mask] >= 0) & (ranks[mask] < 10)
    for name, part in (("from the event's own micro-batch", own), ("from an earlier one", ~own)):
        print(
            f"  served list {name}: {int(part.sum()):,} events, HR@10 live "
            f"{live_hits[part].mean():.4f} vs prequential {offline_hits[part].mean():.4f}"
        )


if __name__ == "__main__":
    main()
