"""Where a worker's CPU goes per event, by stage: one worker through the real broker, a
backlog of synthetic events (``make bench``'s world), its event-loop thread sampled during
the backlog only (``loadtest/profile_hook``: CPU-weighted stack samples from a thread, no
tracing hook, so the worker runs at its own pace — pyinstrument's per-call hook made it
~10x slower here, which says more about the hook than the worker).

Each sample's CPU is charged to the innermost worker function of its stack that names a
stage — decode (``_validate``), state read, live scoring, maps (``to_map``), share (the
statistics delta's publish), emit (table writes and recommendation sends) — and the rest,
by its innermost library frame, to Faust, aiokafka, mode, asyncio or other. The threads'
own CPU clocks give the loop thread, the compute thread (the engine) and the process
total; every loop callback's CPU, summed per owner (a task under its coroutine), gives the
second table, with the loop's own share (select, scheduling) as the rest. Samples that
find the loop back in the selector cannot say what the CPU since the previous one went to:
that part is shown as unattributed. CPU time, not wall time: the machine may be shared
(``uptime`` is printed before and after). ``PYTHONPATH`` may name another tree's
sitecustomize (e.g. an older checkout to compare with) that runs the hook itself.

Run: ``python -m loadtest.profile_worker`` (``--help``); writes
``loadtest/out/profile-worker.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console
from rich.table import Table

from loadtest.bench_engine import OUT, artifacts, metric_sums, send, stage_costs, synthetic_events
from loadtest.machine import MachineRecord
from streamrec.config import Settings
from streamrec.demo import start_kafka, start_worker, step

HOOK = Path(__file__).with_name("profile_hook")
REPORT = Path("loadtest/out/profile-worker.json").absolute()
#: Functions of the worker whose samples (with all they call) make a stage.
STAGES = {
    "_validate": "decode",
    "_read_states": "state read",
    "_read_served": "live",
    "score_batch": "live",
    "record": "live",
    "to_map": "maps (to_map)",
    "publish": "share",
    "_write_back": "emit",
    "deliver": "dlq",
}
#: Libraries the rest is charged to, by a path fragment of the innermost frame that has one.
LIBRARIES = (("aiokafka", "aiokafka"), ("/kafka/", "kafka"), ("faust", "faust"),
             ("/mode/", "mode"), ("asyncio", "asyncio"), ("aiohttp", "aiohttp"))  # fmt: skip


def bucket(stack: list[str]) -> str:
    """The stage, library or idle that one sampled stack (outermost first) belongs to."""
    for entry in reversed(stack):
        path, _, function = entry.rpartition(":")
        if function == "select" and path.endswith("selectors.py"):
            return "idle"
        if function in STAGES and "/streams/" in path:  # the worker's, not faust's
            return STAGES[function]
    for entry in reversed(stack):
        for fragment, name in LIBRARIES:
            if fragment in entry:
                return f"loop: {name}"
    return "loop: other"


def analyze(where: Path, events: int) -> dict[str, float]:
    """CPU ms per event by stage and by thread, from the hook's ``samples.json``."""
    samples = json.loads((where / "samples.json").read_text())
    per_event = 1000 / max(1, events)
    out: defaultdict[str, float] = defaultdict(float)
    for stack, seconds in samples["stacks_s"].items():
        out[bucket(stack.split(";"))] += seconds * per_event
    # CPU spent since the previous sample by a loop that is back in the selector when
    # sampled: busy spells shorter than the switch interval (see the hook).
    out["loop: unattributed (sampled in the selector)"] = out.pop("idle", 0.0)
    for name, seconds in samples["threads_s"].items():
        label = "loop thread" if name == samples["loop_thread"] else name.split("_")[0]
        out[f"thread: {label}"] += seconds * per_event
    out["process total"] = samples["process_s"] * per_event
    return dict(out)


def callbacks(where: Path, events: int, top: int = 14) -> dict[str, float]:
    """The loop thread's CPU ms per event by callback owner (the ``top`` largest, the
    rest summed), and what is outside every callback: the loop itself (select,
    scheduling, timers)."""
    samples = json.loads((where / "samples.json").read_text())
    per_event = 1000 / max(1, events)
    owners = sorted(samples["callbacks_s"].items(), key=lambda kv: -kv[1])
    out = {name: seconds * per_event for name, seconds in owners[:top]}
    out["other callbacks"] = sum(seconds for _, seconds in owners[top:]) * per_event
    loop = samples["threads_s"][samples["loop_thread"]]
    out["the loop itself"] = (loop - sum(samples["callbacks_s"].values())) * per_event
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="Catalog size.")
    parser.add_argument("--events", type=int, default=10_000, help="Backlog events profiled.")
    parser.add_argument("--max-batch", default="256")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--label", default="", help="Name of this run in the report.")
    parser.add_argument("--out", type=Path, default=REPORT, help="JSON report.")
    args = parser.parse_args()
    console = Console(width=160)
    OUT.mkdir(parents=True, exist_ok=True)
    machine = MachineRecord(say=console.print)
    where = Path(tempfile.mkdtemp(prefix="profile-", dir=OUT))
    # After any PYTHONPATH given: a sitecustomize there comes first (and may run the hook).
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""), str(HOOK)) if p)
    env = {"STREAMREC_WORKER_MAX_BATCH": args.max_batch, "PROFILE_WORKER_DIR": str(where),
           "PYTHONPATH": path}  # fmt: skip
    with ExitStack() as stack:
        step("Kafka")
        connection = start_kafka(stack, Settings())
        art = artifacts(args.items)
        events = synthetic_events(args.items, args.events + 500)
        step(f"worker: {args.events:,} backlog events, its loop profiled")
        worker = start_worker(stack, connection, art, OUT, args.partitions, env)
        send(connection, worker, events[:500], ["--max"])  # warm-up
        before = metric_sums([worker])
        (where / "start").touch()
        while not (where / "started").exists():
            time.sleep(0.05)
        _, _, n, per_s = send(connection, worker, events[500:], ["--max"])
        (where / "stop").touch()
        while not (where / "samples.json").exists():
            time.sleep(0.1)
        costs = stage_costs(before, metric_sums([worker]))
    result = {
        "label": args.label,
        "events": n,
        "events_per_s": per_s,
        "batch": costs["batch"],
        "cpu_ms_per_event": analyze(where, n),
        "loop_cpu_ms_per_event_by_callback": callbacks(where, n),
        "stage_wall_ms_per_event": costs,
        "machine": machine.finish(),
    }
    table = Table(title=f"worker CPU ms per event ({args.label or 'this tree'})")
    table.add_column("stage")
    table.add_column("CPU ms/event", justify="right")
    for name, ms in sorted(result["cpu_ms_per_event"].items(), key=lambda kv: -kv[1]):
        table.add_row(name, f"{ms:.4f}")
    console.print(table)
    owners = Table(title="loop thread CPU ms per event, by callback owner")
    owners.add_column("owner")
    owners.add_column("CPU ms/event", justify="right")
    for name, ms in result["loop_cpu_ms_per_event_by_callback"].items():
        owners.add_row(name, f"{ms:.4f}")
    console.print(owners)
    console.print(f"{per_s:,.0f} events/s, mean batch {costs['batch']:.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
