"""``make bench``: one worker's cost per event beside the raw library floor of the same
work, micro-batched vs per-event, side by side in one run, as one table and
``loadtest/out/bench-engine.json``.

Setup (cached in ``out/bench-engine``): a synthetic world with a 1M-item catalog
(``streamrec data synth``), an IVF index over it (``streamrec index build``) and the
quick student reranker of ``make demo``'s MovieLens models (its features do not depend on
the catalog). Then, one thread everywhere:

1. **engine core in process** (no Kafka): ``Engine.process`` over the same synthetic
   events, warmed up on earlier ones, in calls of each ``--batch-sizes`` (1 = per-event),
   every size from the same starting state: events/s, CPU ms per event, per-call p50/p99
   and ms per event by stage;
2. **floor** (:mod:`loadtest.floor`): the batched run's own faiss searches and ONNX calls
   replayed as bare library calls, plus msgpack and an aiokafka produce of its
   recommendations;
3. **worker through the real broker**, per configuration a fresh worker on fresh topics:
   a backlog produced as fast as Kafka takes it (events/s from the first event's append to
   the last recommendation's append; the worker's CPU time per event from /proc), then
   events replayed at ``--paced-share`` of that rate (or at ``--paced-rate``) for
   ``--paced-seconds``: p50/p99 of event → recommendation from the records' Kafka
   timestamps (create time: the replaying producer stamps an event when it sends it, so its
   linger, ``STREAMREC_PRODUCER_LINGER_MS``, counts; the worker stamps a recommendation
   when it emits it; one clock here).
   ``--configs two_workers`` adds two workers in one consumer group on 2 partitions (CPU
   time and stage costs summed over both).

"× floor" is CPU ms per event over the floor's: CPU time, not wall time, because the
machine may be shared (the ``uptime`` load averages before and after are printed and kept
in the JSON's ``machine``). ``--in-process`` runs steps 1-2 only, with no Kafka or Java
(e.g. on a GPU host; ``--device`` picks where index and reranker run).

Run: ``python -m loadtest.bench_engine`` (``--help`` for sizes).
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import requests
from rich.console import Console
from rich.table import Table

from loadtest.floor import CallRecorder, aiokafka_produce, measure_floor
from loadtest.machine import MachineRecord, cpu_seconds
from streamrec.config import Settings
from streamrec.demo import (
    RunningWorker,
    delete_all,
    latency,
    prepare_data,
    start_kafka,
    start_worker,
    step,
    streamrec,
    train,
    wait_for_recs,
)
from streamrec.streams.connection import KafkaConnection
from streamrec.streams.core.artifacts import Artifacts
from streamrec.streams.core.engine import Engine
from streamrec.streams.core.loader import load_engine
from streamrec.streams.core.state import UserState
from streamrec.streams.recorded import read_events, write_events
from streamrec.streams.topics import admin_client, ensure_topics
from streamrec.streams.wire import Event, Recommendation

OUT = Path("out/bench-engine").absolute()
REPORT = Path("loadtest/out/bench-engine.json").absolute()


@dataclass(frozen=True)
class WorkerConfig:
    """A compared worker configuration: its settings, and how many worker processes share
    the topics' partitions (``partitions``; None: ``--partitions``)."""

    env: dict[str, str]
    workers: int = 1
    partitions: int | None = None

    @property
    def per_event(self) -> bool:
        """One event per engine call: no window to widen, and ``--per-event-events``."""
        return self.env.get("STREAMREC_WORKER_MAX_BATCH") == "1"


#: The compared configurations. The batched ones keep the settings' default window unless
#: ``--batch-window-ms`` is given. ``two_workers``: the batched one twice in one consumer
#: group on 2 partitions (not in the default ``--configs``: 2-core hosts share their cores).
BATCHED = {"STREAMREC_WORKER_MAX_BATCH": "256"}
CONFIGS = {
    "batched": WorkerConfig(BATCHED),
    "per_event": WorkerConfig(
        {"STREAMREC_WORKER_MAX_BATCH": "1", "STREAMREC_WORKER_BATCH_WINDOW_MS": "1"}
    ),
    "two_workers": WorkerConfig(BATCHED, workers=2, partitions=2),
}
DEFAULT_CONFIGS = ("batched", "per_event")
#: Stage rows of the table: (label, key in the figures, key in the floor).
STAGES = (
    ("decode (worker)", "decode_ms", None),
    ("state read (worker)", "state_read_ms", None),
    ("apply", "apply_ms", None),
    ("search (floor: faiss)", "search_ms", "search"),
    ("features", "features_ms", None),
    ("rerank (floor: ONNX)", "rerank_ms", "rerank"),
    ("live scoring (worker)", "live_ms", None),
    ("emit (floor: msgpack + produce)", "emit_ms", ("msgpack", "produce")),
)


def artifacts(items: int, reranker: bool = True) -> Path:
    """Index over the synthetic catalog + the demo's student reranker, built once (the
    reranker is left out with ``reranker=False``, e.g. on a host without MovieLens)."""
    art = OUT / f"artifacts-{items}"
    layout = Artifacts(art)
    synth = OUT / f"synth-{items}.msgpack"
    if not synth.exists():
        streamrec(["data", "synth", "--items", str(items), "--users", "20000",
                   "--events", "200000", "--out", str(synth)])  # fmt: skip
    if not layout.index.is_dir():
        streamrec(["index", "build", "--vectors", str(synth.with_suffix(".items.npz")),
                   "--out", str(layout.index), "--kind", "ivf", "--threads", "1"])  # fmt: skip
    if not reranker or layout.reranker.is_file():
        return art
    demo = Artifacts(Path("out/demo/artifacts").absolute())
    if not demo.reranker.is_file():
        train_part, _ = prepare_data(Path("out/demo").absolute())
        train(train_part, demo.dir)
    shutil.copy(demo.reranker, layout.reranker)
    shutil.copy(demo.manifest, layout.manifest)
    return art


def send(
    connection: KafkaConnection, worker: RunningWorker, events: list[Event], pace: list[str]
) -> tuple[float, float, int, float]:
    """Replay ``events`` into the worker, wait for all their recommendations, measure."""
    path = OUT / f"{worker.app_id}.msgpack"
    write_events(path, events)
    streamrec(["replay", str(path), "--topic", worker.topics["events"], *pace], env=worker.env)
    path.unlink()
    ids = {e.event_id for e in events}
    wait_for_recs(connection, worker.topics["recs"], ids, timeout=900)
    return latency(connection, worker.topics, ids)


def run_config(
    connection: KafkaConnection,
    art: Path,
    events: list[Event],
    config: WorkerConfig,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Throughput with a backlog, then latency at ``--paced-share`` of that rate (or
    ``--paced-rate``), on fresh workers (CPU time and stage costs summed over them)."""
    with ExitStack() as stack:
        partitions = config.partitions or args.partitions
        workers = [start_worker(stack, connection, art, OUT, partitions, config.env)]
        for _ in range(config.workers - 1):
            workers.append(
                start_worker(stack, connection, art, OUT, partitions, config.env, join=workers[0])
            )
        half = len(events) // 2
        send(connection, workers[0], events[:500], ["--max"])  # warm-up: first batches, caches
        before, cpu = metric_sums(workers), cpu_seconds_of(workers)
        _, _, backlog, per_s = send(connection, workers[0], events[500:half], ["--max"])
        cpu = cpu_seconds_of(workers) - cpu
        costs = stage_costs(before, metric_sums(workers))  # the backlog phase's batches
        rate = args.paced_rate or max(10.0, per_s * args.paced_share)
        paced = events[half : half + int(rate * args.paced_seconds)]
        before = metric_sums(workers)
        p50, p99, n, _ = send(connection, workers[0], paced, ["--rate", f"{rate:.0f}"])
        paced_costs = stage_costs(before, metric_sums(workers))
    return {"events_per_s": per_s, "backlog_events": backlog, "paced_rate": round(rate),
            "p50_ms": p50, "p99_ms": p99, "paced_events": n, "paced_batch": paced_costs["batch"],
            "paced_stage_ms": paced_costs, "workers": config.workers, "partitions": partitions,
            "cpu_ms_per_event": 1000 * cpu / max(1, backlog), **costs}  # fmt: skip


def cpu_seconds_of(workers: list[RunningWorker]) -> float:
    """CPU seconds the worker processes have used so far, together."""
    return sum(cpu_seconds(w.pid) for w in workers)


def metric_sums(workers: list[RunningWorker]) -> dict[str, float]:
    """The workers' batch-size and stage-seconds sums and counts, from their /metrics,
    added up."""
    sums: dict[str, float] = {}
    for worker in workers:
        for line in requests.get(f"{worker.url}/metrics", timeout=10).text.splitlines():
            if line.startswith(("streamrec_stage_seconds_sum", "streamrec_batch_size_")):
                name, value = line.rsplit(" ", 1)
                sums[name] = sums.get(name, 0.0) + float(value)
    return sums


def stage_costs(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Mean batch size and ms per event of each stage between two :func:`metric_sums`."""
    sums = {name: value - before.get(name, 0.0) for name, value in after.items()}
    events = sums["streamrec_batch_size_sum"]
    costs = {"batch": events / max(1.0, sums["streamrec_batch_size_count"])}
    for name, seconds in sums.items():
        if name.startswith("streamrec_stage_seconds_sum"):
            stage = name.split('"')[1]
            costs[f"{stage}_ms"] = 1000 * seconds / events
    return costs


def synthetic_events(items: int, n: int) -> list[Event]:
    """The first ``n`` events of the synthetic stream over the ``items`` catalog."""
    events = []
    for event in read_events(OUT / f"synth-{items}.msgpack"):
        events.append(event)
        if len(events) >= n:
            break
    return events


def copy_states(states: dict[str, UserState]) -> dict[str, UserState]:
    return {user: UserState.from_map(state.to_map()) for user, state in states.items()}


def time_calls(
    engine: Engine, events: list[Event], states: dict[str, UserState], batch: int
) -> tuple[dict[str, float], list[Recommendation]]:
    """``Engine.process`` over ``events`` in calls of ``batch``: wall events/s, CPU ms per
    event, per-call p50/p99 (ms) and ms per event by stage; and the recommendations."""
    walls, stages = [], dict.fromkeys(engine.last_batch_stats.stages(), 0.0)
    recs: list[Recommendation] = []
    cpu = time.process_time()
    for start in range(0, len(events), batch):
        began = time.perf_counter()
        recs.extend(engine.process(events[start : start + batch], states))
        walls.append(time.perf_counter() - began)
        for stage, seconds in engine.last_batch_stats.stages().items():
            stages[stage] += seconds
    cpu = time.process_time() - cpu
    n = len(events)
    figures = {
        "events_per_s": n / sum(walls),
        "cpu_ms_per_event": 1000 * cpu / n,
        "p50_ms": 1000 * float(np.percentile(walls, 50)),
        "p99_ms": 1000 * float(np.percentile(walls, 99)),
        "batch": batch,
        **{f"{stage}_ms": 1000 * seconds / n for stage, seconds in stages.items()},
    }
    return figures, recs


def in_process(
    args: argparse.Namespace, art: Path, connection: KafkaConnection | None
) -> tuple[dict[int, dict[str, float]], dict[str, float], dict[str, Any]]:
    """The engine core alone, every batch size from the same warmed state, and the floor
    of the largest size's work: (figures per batch size, floor, configuration)."""
    reranker = Artifacts(art).reranker
    has_reranker = reranker.is_file() and not args.no_reranker
    settings = Settings(
        engine_device=args.device,
        engine_threads=1,
        engine_reranker=reranker.name if has_reranker else "",
    )
    engine = load_engine(art, settings)
    recorder = CallRecorder()
    recorder.attach(engine)
    sizes = sorted({int(b) for b in args.batch_sizes.split(",")}, reverse=True)
    events = synthetic_events(args.items, args.warmup + args.events)
    warm, timed = events[: args.warmup], events[args.warmup :]
    step(f"in process: {len(warm):,} warm-up events applied; index {engine.index!r}")
    states: dict[str, UserState] = {}
    for start in range(0, len(warm), 4096):
        engine.apply(warm[start : start + 4096], states)
    popular = engine.popular.snapshot()
    engine.process(timed[:512], copy_states(states))  # first calls: caches, GPU context
    results: dict[int, dict[str, float]] = {}
    recs: list[Recommendation] = []
    for batch in sizes:
        n = len(timed) if batch > 1 else min(len(timed), args.per_event_events)
        step(f"in process, batch {batch}: {n:,} events")
        engine.popular.restore(popular)  # keeps the row map co-visitation shares
        recorder.active = batch == sizes[0]
        results[batch], got = time_calls(engine, timed[:n], copy_states(states), batch)
        recorder.active = False
        recs = recs or got
    step("floor: the batched run's library calls alone")
    produce = None
    if connection is not None:
        scratch = f"bench-floor-{uuid.uuid4().hex[:8]}"
        with admin_client(connection) as admin:
            ensure_topics(admin, [scratch], 1)
        produce = aiokafka_produce(connection.client_options(), scratch)
    try:
        floor = measure_floor(engine, recorder, recs, len(timed), produce=produce)
    finally:
        if connection is not None:
            delete_all(connection, [scratch])
    config = {
        "items": len(engine.index),
        "index": engine.index.kind,
        "device": engine.index.device,
        "ivf_nprobe": engine.index.params.ivf_nprobe,
        "candidates": engine.config.candidates,
        "reranker": getattr(engine.scorer, "provider", "none"),
        "threads": 1,
    }
    return results, floor, config


def ratio(figures: dict[str, Any], floor: dict[str, float]) -> float:
    """CPU ms per event over the floor's."""
    return figures["cpu_ms_per_event"] / floor["total"]


def report(
    in_proc: dict[int, dict[str, float]],
    worker: dict[str, dict[str, Any]],
    floor: dict[str, float],
    config: dict[str, Any],
    machine: dict[str, Any],
) -> dict[str, Any]:
    """The JSON report: ``batched``/``per_event`` are the worker through Kafka when it ran,
    else the engine in process (``mode`` says which)."""
    sizes = sorted(in_proc, reverse=True)
    in_proc_named = {"batched": in_proc[sizes[0]], "per_event": in_proc.get(1, {})}
    headline = worker or in_proc_named
    out: dict[str, Any] = {"mode": "worker through Kafka" if worker else "engine in process"}
    for name, figures in headline.items():
        if figures:
            out[name] = {**figures, "ratio_to_floor": ratio(figures, floor)}
            out[name].setdefault("paced_rate", None)
    if out.get("per_event"):
        out["batched_over_per_event"] = (
            out["batched"]["events_per_s"] / out["per_event"]["events_per_s"]
        )
    if out.get("two_workers") and out.get("batched"):
        out["two_workers_over_batched"] = (
            out["two_workers"]["events_per_s"] / out["batched"]["events_per_s"]
        )
    out["in_process"] = {
        str(b): {**f, "ratio_to_floor": ratio(f, floor)} for b, f in in_proc.items()
    }
    out["floor"] = floor
    out["floor_ms_per_event"] = floor["total"]
    out["floor_events_per_s"] = 1000 / floor["total"]
    out["config"] = config
    out["machine"] = machine
    return out


def table(result: dict[str, Any]) -> Table:
    """The one table: stages (ms per event) and totals, floor | in process | worker."""
    floor, cfg = result["floor"], result["config"]
    columns: list[tuple[str, dict[str, Any]]] = [
        (f"in-process batch {b}" if b != "1" else "in-process per-event", f)
        for b, f in result["in_process"].items()
    ]
    if result["mode"].startswith("worker"):
        columns += [(f"worker {n.replace('_', '-')}", result[n]) for n in CONFIGS
                    if n in result]  # fmt: skip
    t = Table(
        title=f"make bench: {cfg['items']:,} items, {cfg['index']} nprobe {cfg['ivf_nprobe']} "
        f"on {cfg['device']}, {cfg['candidates']} candidates, reranker {cfg['reranker']}, "
        "1 thread; stages: wall ms per event"
    )
    t.add_column("stage / figure")
    t.add_column("floor", justify="right")
    for name, _ in columns:
        t.add_column(name, justify="right")

    def cell(figures: dict[str, Any], key: str, fmt: str = "{:.3f}") -> str:
        value = figures.get(key)
        return "—" if value is None else fmt.format(value)

    for label, key, floor_key in STAGES:
        keys = floor_key if isinstance(floor_key, tuple) else (floor_key,)
        parts = [floor[k] for k in keys if k is not None and k in floor]
        t.add_row(label, f"{sum(parts):.3f}" if parts else "—", *[cell(f, key) for _, f in columns])
    t.add_row("CPU ms/event (process)", f"{floor['total']:.3f}",
              *[cell(f, "cpu_ms_per_event") for _, f in columns], end_section=False)  # fmt: skip
    t.add_row("× floor (CPU)", "1.0", *[f"{ratio(f, floor):.1f}" for _, f in columns])
    t.add_row("events/s per core (1000 / CPU ms)", f"{1000 / floor['total']:,.0f}",
              *[f"{1000 / f['cpu_ms_per_event']:,.0f}" for _, f in columns])  # fmt: skip
    t.add_row("events/s (in process: wall; worker: backlog)",
              "—",
              *[cell(f, "events_per_s", "{:,.0f}") for _, f in columns])  # fmt: skip
    t.add_row("mean batch (backlog)", "—", *[cell(f, "batch", "{:.0f}") for _, f in columns])
    t.add_row(
        "paced rate /s (worker)", "—", *[cell(f, "paced_rate", "{:,.0f}") for _, f in columns]
    )
    t.add_row("p50 ms (in process: per call; worker: event→rec at paced rate)", "—",
              *[cell(f, "p50_ms", "{:.2f}") for _, f in columns])  # fmt: skip
    t.add_row("p99 ms (same)", "—", *[cell(f, "p99_ms", "{:.2f}") for _, f in columns])
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="Catalog size.")
    parser.add_argument("--events", type=int, default=20_000, help="Events per batched run.")
    parser.add_argument(
        "--per-event-events", type=int, default=3_000, help="Events per per-event run."
    )
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--batch-window-ms", help="Batched run's window (default: the settings' default)."
    )
    parser.add_argument(
        "--configs",
        default=",".join(DEFAULT_CONFIGS),
        help=f"Comma-separated worker configurations, of: {', '.join(CONFIGS)}.",
    )
    parser.add_argument(
        "--paced-share", type=float, default=0.8, help="Latency phase rate / backlog rate."
    )
    parser.add_argument(
        "--paced-rate",
        type=float,
        default=0.0,
        help="Latency phase rate in events/s, instead of --paced-share of the backlog rate.",
    )
    parser.add_argument("--paced-seconds", type=float, default=15.0)
    parser.add_argument(
        "--in-process", action="store_true", help="Engine core and floor only, no Kafka."
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    parser.add_argument(
        "--batch-sizes", default="256,1", help="In-process: comma-separated call sizes."
    )
    parser.add_argument(
        "--in-process-events", type=int, default=10_000, help="In-process: events per size."
    )
    parser.add_argument(
        "--warmup", type=int, default=30_000, help="In-process: events applied before timing."
    )
    parser.add_argument(
        "--no-reranker", action="store_true", help="Retrieval order only (no reranker)."
    )
    parser.add_argument("--out", type=Path, default=REPORT, help="JSON report.")
    args = parser.parse_args()
    console = Console(width=160)
    OUT.mkdir(parents=True, exist_ok=True)
    machine = MachineRecord(say=console.print)
    worker: dict[str, dict[str, Any]] = {}
    worker_cpu = 0.0
    with ExitStack() as stack:
        connection = None
        if not args.in_process:
            step("Kafka")
            connection = start_kafka(stack, Settings())
        step(f"synthetic {args.items:,}-item catalog, IVF index, reranker")
        art = artifacts(args.items, reranker=not args.no_reranker)
        in_proc, floor, config = in_process(
            argparse.Namespace(**{**vars(args), "events": args.in_process_events}), art, connection
        )
        gc.collect()  # the in-process engine's index is freed before the workers load theirs
        events = synthetic_events(args.items, max(args.events, args.per_event_events))
        for name in [] if connection is None else args.configs.split(","):
            setup = CONFIGS[name]
            if not setup.per_event and args.batch_window_ms:
                window = {"STREAMREC_WORKER_BATCH_WINDOW_MS": args.batch_window_ms}
                setup = replace(setup, env={**setup.env, **window})
            n = args.per_event_events if setup.per_event else args.events
            step(f"worker {name}: {n:,} events through Kafka")
            worker[name] = run_config(connection, art, events[:n], setup, args)
            worker_cpu += worker[name]["cpu_ms_per_event"] * worker[name]["backlog_events"] / 1000
    result = report(in_proc, worker, floor, config, machine.finish(worker_backlog_cpu_s=worker_cpu))
    console.print(table(result))
    if "batched_over_per_event" in result:
        console.print(f"batched / per-event throughput: {result['batched_over_per_event']:.1f}x")
    if "two_workers_over_batched" in result:
        console.print(
            f"two workers / one, events/s: {result['two_workers_over_batched']:.2f}x "
            f"on {result['machine']['cpu_count']} cores"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
