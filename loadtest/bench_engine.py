"""Engine benchmark through the real broker: sustained events/s and event→recommendation
latency of one worker process, micro-batched vs per-event, side by side.

Setup (cached in ``out/bench-engine``): a synthetic world with a 1M-item catalog
(``streamrec data synth``), an IVF index over it (``streamrec index build``) and the
quick student reranker of ``make demo``'s MovieLens models (its features do not depend on
the catalog). Then, per configuration, a fresh worker (1 compute thread) on fresh topics:

- throughput: a backlog of events is produced as fast as Kafka takes it; events/s is the
  count over the span from the first event's append to the last recommendation's append;
- latency: events replayed at a steady rate (half the measured throughput), p50/p99 of
  event append → recommendation append (Kafka timestamps, one clock).

Run: ``python -m loadtest.bench_engine`` (``--events`` to change sizes). Figures depend on
the machine and on whatever else runs on it: read them with the load average printed.

``--in-process`` measures the engine core alone, with no Kafka or Java (e.g. on a GPU host):
``Engine.process`` over the same synthetic events, warmed up on earlier ones, at each
``--batch-sizes`` (1 = per-event), every size from the same starting state; it prints
events/s (wall and CPU), per-call p50/p99 and ms per event by stage. ``--device`` picks
where index and reranker run (``auto`` = GPU when present).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import requests
from rich.console import Console
from rich.table import Table

from streamrec.config import Settings
from streamrec.demo import (
    RunningWorker,
    latency,
    prepare_data,
    start_kafka,
    start_worker,
    step,
    streamrec,
    train,
    wait_for_recs,
)
from streamrec.streams.core.engine import Engine
from streamrec.streams.core.loader import load_engine
from streamrec.streams.core.popular import Popular
from streamrec.streams.core.state import UserState
from streamrec.streams.recorded import read_events, write_events
from streamrec.streams.wire import Event

OUT = Path("out/bench-engine").absolute()
#: (name, worker settings) of the compared configurations.
#: The batched one keeps the settings' default window unless ``--batch-window-ms`` is given.
CONFIGS = {
    "batched": {"STREAMREC_WORKER_MAX_BATCH": "256"},
    "per-event": {"STREAMREC_WORKER_MAX_BATCH": "1", "STREAMREC_WORKER_BATCH_WINDOW_MS": "1"},
}


def artifacts(items: int, reranker: bool = True) -> Path:
    """Index over the synthetic catalog + the demo's student reranker, built once (the
    reranker is left out with ``reranker=False``, e.g. on a host without MovieLens)."""
    art = OUT / f"artifacts-{items}"
    synth = OUT / f"synth-{items}.msgpack"
    if not synth.exists():
        streamrec(["data", "synth", "--items", str(items), "--users", "20000",
                   "--events", "200000", "--out", str(synth)])  # fmt: skip
    if not (art / "index").is_dir():
        streamrec(["index", "build", "--vectors", str(synth.with_suffix(".items.npz")),
                   "--out", str(art / "index"), "--kind", "ivf", "--threads", "1"])  # fmt: skip
    if not reranker or (art / "reranker.onnx").is_file():
        return art
    demo_models = Path("out/demo/artifacts").absolute()
    if not (demo_models / "reranker.onnx").is_file():
        train_part, _ = prepare_data(Path("out/demo").absolute())
        train(train_part, demo_models)
    for name in ("reranker.onnx", "manifest.json"):
        shutil.copy(demo_models / name, art / name)
    return art


def send(bootstrap: str, worker: RunningWorker, events: list[Event], pace: list[str]):
    """Replay ``events`` into the worker, wait for all their recommendations, measure."""
    path = OUT / f"{worker.app_id}.msgpack"
    write_events(path, events)
    streamrec(["replay", str(path), "--topic", worker.topics["events"], *pace], env=worker.env)
    path.unlink()
    ids = {e.event_id for e in events}
    wait_for_recs(bootstrap, worker.topics["recs"], ids, timeout=900)
    return latency(bootstrap, worker.topics, ids)


def run_config(
    bootstrap: str, art: Path, events: list[Event], settings_env: dict[str, str], partitions: int
) -> dict[str, float]:
    """Throughput with a backlog, then latency at half that rate, on one fresh worker."""
    with ExitStack() as stack:
        worker = start_worker(stack, bootstrap, art, OUT, partitions, settings_env)
        half = len(events) // 2
        send(bootstrap, worker, events[:500], ["--max"])  # warm-up: first batches, caches
        before = metric_sums(worker.url)
        _, _, backlog, per_s = send(bootstrap, worker, events[500:half], ["--max"])
        costs = stage_costs(before, metric_sums(worker.url))  # the backlog phase's batches
        rate = max(10.0, per_s / 2)
        paced = events[half : half + int(rate * 20)]  # about 20 s at that rate
        before = metric_sums(worker.url)
        p50, p99, n, _ = send(bootstrap, worker, paced, ["--rate", f"{rate:.0f}"])
        paced_batch = stage_costs(before, metric_sums(worker.url))["batch"]
        return {"events_per_s": per_s, "backlog": backlog, "rate": rate, "p50_ms": p50,
                "p99_ms": p99, "paced": n, "paced_batch": paced_batch, **costs}  # fmt: skip


def metric_sums(url: str) -> dict[str, float]:
    """The worker's batch-size and stage-seconds sums and counts, from its /metrics."""
    sums: dict[str, float] = {}
    for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(("streamrec_stage_seconds_sum", "streamrec_batch_size_")):
            name, value = line.rsplit(" ", 1)
            sums[name] = float(value)
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
) -> dict[str, float]:
    """``Engine.process`` over ``events`` in calls of ``batch``: wall and CPU events/s,
    per-call p50/p99 (ms) and ms per event by stage."""
    walls, stages = [], dict.fromkeys(engine.last_batch_stats.stages(), 0.0)
    cpu = time.process_time()
    for start in range(0, len(events), batch):
        began = time.perf_counter()
        engine.process(events[start : start + batch], states)
        walls.append(time.perf_counter() - began)
        for stage, seconds in engine.last_batch_stats.stages().items():
            stages[stage] += seconds
    cpu = time.process_time() - cpu
    n = len(events)
    return {
        "events_per_s": n / sum(walls),
        "cpu_events_per_s": n / cpu,
        "p50_ms": 1000 * float(np.percentile(walls, 50)),
        "p99_ms": 1000 * float(np.percentile(walls, 99)),
        **{f"{stage}_ms": 1000 * seconds / n for stage, seconds in stages.items()},
    }


def in_process(args: argparse.Namespace, console: Console) -> None:
    """The engine core alone (no Kafka): every batch size from the same warmed state."""
    step(
        f"synthetic {args.items:,}-item catalog, IVF index"
        + ("" if args.no_reranker else ", reranker")
    )
    art = artifacts(args.items, reranker=not args.no_reranker)
    has_reranker = (art / "reranker.onnx").is_file() and not args.no_reranker
    settings = Settings(
        engine_device=args.device,
        engine_threads=1,
        engine_reranker="reranker.onnx" if has_reranker else "",
    )
    engine = load_engine(art, settings)
    sizes = sorted({int(b) for b in args.batch_sizes.split(",")}, reverse=True)
    events = synthetic_events(args.items, args.warmup + args.events)
    warm, timed = events[: args.warmup], events[args.warmup :]
    step(f"warm-up: {len(warm):,} events applied; index {engine.index!r}")
    states: dict[str, UserState] = {}
    for start in range(0, len(warm), 4096):
        engine.apply(warm[start : start + 4096], states)
    popular = engine.popular.to_map()
    engine.process(timed[:512], copy_states(states))  # first calls: caches, GPU context
    results = {}
    for batch in sizes:
        n = len(timed) if batch > 1 else min(len(timed), args.per_event_events)
        step(f"batch {batch}: {n:,} events")
        engine.popular = Popular.from_map(popular)
        results[batch] = time_calls(engine, timed[:n], copy_states(states), batch)
    reranker = getattr(engine.scorer, "provider", "none")
    table = Table(
        title=f"engine core in process, {args.items:,} items, {engine.index.kind}/"
        f"{engine.index.device}, reranker {reranker}, 1 thread"
    )
    stages = [k for k in results[sizes[0]] if k.endswith("_ms") and not k.startswith("p")]
    columns = ("batch", "events/s", "CPU events/s", "p50 ms/call", "p99 ms/call")
    for column in (*columns, *[f"{s[:-3]} ms/ev" for s in stages]):
        table.add_column(column, justify="right")
    for batch, r in results.items():
        table.add_row(str(batch), f"{r['events_per_s']:,.0f}", f"{r['cpu_events_per_s']:,.0f}",
                      f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                      *[f"{r[s]:.3f}" for s in stages])  # fmt: skip
    console.print(table)
    if 1 in results and len(sizes) > 1:
        speedup = results[sizes[0]]["events_per_s"] / results[1]["events_per_s"]
        console.print(f"batch {sizes[0]} / per-event throughput: {speedup:.1f}x")
    console.print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="Catalog size.")
    parser.add_argument("--events", type=int, default=40_000, help="Events per batched run.")
    parser.add_argument("--per-event-events", type=int, default=6_000, help="Per-event run.")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--batch-window-ms", help="Batched run's window (default: the settings' default)."
    )
    parser.add_argument(
        "--configs", default=",".join(CONFIGS), help="Comma-separated configurations to run."
    )
    parser.add_argument(
        "--in-process", action="store_true", help="Engine core only, no Kafka (see above)."
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    parser.add_argument(
        "--batch-sizes", default="256,64,1", help="In-process: comma-separated calls sizes."
    )
    parser.add_argument(
        "--warmup", type=int, default=60_000, help="In-process: events applied before timing."
    )
    parser.add_argument(
        "--no-reranker", action="store_true", help="Retrieval order only (no reranker)."
    )
    args = parser.parse_args()
    console = Console(width=140)
    OUT.mkdir(parents=True, exist_ok=True)
    if args.in_process:
        in_process(args, console)
        return
    settings = Settings()
    results = {}
    with ExitStack() as stack:
        step("Kafka")
        bootstrap = start_kafka(stack, settings)
        step(f"synthetic {args.items:,}-item catalog, IVF index, reranker")
        art = artifacts(args.items)
        synth = OUT / f"synth-{args.items}.msgpack"
        events = []
        for event in read_events(synth):
            events.append(event)
            if len(events) >= args.events:
                break
        for name in args.configs.split(","):
            env = dict(CONFIGS[name])
            if name == "batched" and args.batch_window_ms:
                env["STREAMREC_WORKER_BATCH_WINDOW_MS"] = args.batch_window_ms
            n = args.events if name == "batched" else args.per_event_events
            step(f"{name}: {n:,} events through one worker")
            results[name] = run_config(bootstrap, art, events[:n], env, args.partitions)
    table = Table(title=f"engine through Kafka, {args.items:,} items, 1 worker, 1 thread")
    for column in ("config", "events/s (backlog)", "at rate", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right")
    for name, r in results.items():
        table.add_row(name, f"{r['events_per_s']:,.0f}", f"{r['rate']:,.0f}/s",
                      f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}")  # fmt: skip
    console.print(table)
    stages = Table(title="backlog phase: ms per event by stage (engine = apply + search + "
                   "features + rerank); mean batch with the backlog and at rate")  # fmt: skip
    first = next(iter(results.values()))
    names = [k for k in first if k.endswith("_ms") and not k.startswith("p")]
    for column in ("config", "batch (backlog)", "batch (at rate)", *[n[:-3] for n in names]):
        stages.add_column(column, justify="right")
    for name, r in results.items():
        stages.add_row(name, f"{r['batch']:.0f}", f"{r['paced_batch']:.1f}",
                       *[f"{r.get(n, 0.0):.2f}" for n in names])  # fmt: skip
    console.print(stages)
    if {"batched", "per-event"} <= results.keys():
        speedup = results["batched"]["events_per_s"] / results["per-event"]["events_per_s"]
        console.print(f"batched / per-event throughput: {speedup:.1f}x")
    console.print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
