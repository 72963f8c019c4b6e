"""``make load``: one worker on a synthetic catalog under locust, two modes one after the
other, a summary table and ``loadtest/out/load.json``.

1. the local Kafka (``streamrec kafka start``'s broker; left running if it already ran)
   and a worker (1 compute thread) on fresh topics, on the ``--items`` synthetic catalog
   of ``make bench`` (built once into ``out/bench-engine``); ``--prime`` events of the
   synthetic stream replayed first, so the feed's users have lists of their own;
2. **GET-only, fixed rate**: ``HttpFeedUser`` with ``--tags read``; ``--get-rate`` requests
   per second as ``--get-users`` users each on a fixed schedule (``--user-rate``, locust's
   ``constant_throughput``): open loop as long as a response is faster than a user's
   interval (a slower one delays only that user; the achieved rate is what is reported);
3. **Kafka event users**: ``KafkaEventUser`` producing ``--event-rate`` events per second
   (same fixed schedule) straight to the worker's ``events`` topic and timing each event
   until its recommendation is read from ``recommendations`` (locust request
   ``event→recommendation``; no answer within ``--answer-timeout`` is a failure);
4. with ``--together``, both modes at once, each at its own rate: what the event stream
   keeps under GET load (``stream_share_under_http``: events/s answered in time together
   over alone) and what GETs get beside the stream (``together`` in ``load.json``).

Each mode leaves locust's CSV (``load-get_stats.csv`` …) and HTML report in
``loadtest/out/``. Latencies are locust's: whole milliseconds. Everything started here
(worker, topics, broker if started here, locust) is stopped on the way out, also on
Ctrl-C, SIGTERM or a failure. Locust runs on the same machine as the worker and the
broker: read the figures with the ``uptime`` load averages printed before and after.

Run: ``python -m loadtest.load`` (``--items 1000000`` is the default; ``--help``).
"""

from __future__ import annotations

import argparse
import csv
import json
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.table import Table

from loadtest.bench_engine import OUT, artifacts, send, synthetic_events
from loadtest.machine import MachineRecord, cpu_seconds, pid_of
from streamrec.config import Settings
from streamrec.demo import start_kafka, start_worker, step
from streamrec.streams.recorded import write_events

REPORTS = Path("loadtest/out").absolute()
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
LOCUST = str(Path(sys.executable).with_name("locust"))
#: Mode → (locust request name in its stats, locust user class and its options).
MODES = {
    "get_recommendations": ("/recommendations/{user}", ["HttpFeedUser", "--tags", "read"]),
    "event_to_recommendation": ("event→recommendation", ["KafkaEventUser"]),
}
EVENTS = "event_to_recommendation"


def mode_figures(stats_csv: Path, name: str) -> dict[str, Any]:
    """``rate`` (achieved per second), ``p50_ms``, ``p99_ms``, ``failures`` and ``requests``
    of request ``name`` in a locust ``*_stats.csv`` (all None/0 when it made none)."""
    with stats_csv.open(newline="") as f:
        row = next((r for r in csv.DictReader(f) if r["Name"] == name), None)
    if row is None or int(row["Request Count"]) == 0:
        return {"rate": 0.0, "p50_ms": None, "p99_ms": None, "failures": 0, "requests": 0}
    return {
        "rate": round(float(row["Requests/s"]), 1),
        "p50_ms": float(row["50%"]),
        "p99_ms": float(row["99%"]),
        "failures": int(row["Failure Count"]),
        "requests": int(row["Request Count"]),
    }


def write_report(
    path: Path,
    modes: dict[str, dict[str, Any]],
    machine: dict[str, Any],
    together: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write ``load.json``: one entry per mode (:func:`mode_figures` and the target rate),
    the machine record and, when the modes also ran at once, their figures then
    (``together``; the worker CPU there is the run's, shared) and the event stream's
    answered (not failed) rate together over alone (``stream_share_under_http``); returns
    it."""
    result: dict[str, Any] = {**modes, "machine": machine}
    if together:
        result["together"] = together
        alone, beside = _answered(modes.get(EVENTS)), _answered(together.get(EVENTS))
        if alone and beside is not None:
            result["stream_share_under_http"] = round(beside / alone, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _answered(figures: dict[str, Any] | None) -> float | None:
    """Requests/s that succeeded (locust's rate counts failures too: an event unanswered
    within the timeout is one)."""
    if not figures or not figures.get("requests"):
        return None
    return float(figures["rate"]) * (1 - figures["failures"] / figures["requests"])


def summary_table(result: dict[str, Any]) -> Table:
    """The summary table of a :func:`write_report` document."""
    t = Table(title="make load: one worker, locust on the same machine (latency in whole ms)")
    columns = ("mode", "target /s", "achieved /s", "requests", "p50 ms", "p99 ms", "failures",
               "worker CPU s")  # fmt: skip
    for column in columns:
        t.add_column(column, justify="right")
    rows = [(m, result.get(m)) for m in MODES]
    rows += [(f"{m} (together)", f) for m, f in result.get("together", {}).items()]
    for mode, f in rows:
        if f is None:
            continue
        t.add_row(mode, f"{f.get('target_rate', 0):,.0f}", f"{f['rate']:,.1f}",
                  f"{f['requests']:,}", _num(f["p50_ms"]), _num(f["p99_ms"]),
                  f"{f['failures']:,}", _num(f.get("worker_cpu_s"), 1))  # fmt: skip
    return t


def _num(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def start_locust(
    mode: str,
    host: str,
    rate: float,
    users: int,
    seconds: int,
    events_file: Path,
    env: dict,
    suffix: str = "",
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start one headless locust run of ``mode`` (its CSV/HTML named with ``suffix``);
    returns the process and its CSV prefix."""
    _, selection = MODES[mode]
    prefix = REPORTS / f"load-{mode.split('_')[0]}{suffix}"
    command = [
        LOCUST, "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--host", host,
        "--user-rate", f"{rate / users:g}", "--events-file", str(events_file),
        "--csv", str(prefix), "--html", f"{prefix}.html", *selection,
    ]  # fmt: skip
    step(f"locust {mode}{suffix}: {rate:,.0f}/s for {seconds} s ({users} users)")
    return subprocess.Popen(command, env=env), prefix


def finish_locust(
    mode: str, run: tuple[subprocess.Popen[bytes], Path], rate: float, seconds: int
) -> dict[str, Any]:
    """Wait for a :func:`start_locust` run; its figures with the target rate."""
    proc, prefix = run
    # locust exits 1 when any request failed: the failures are in the figures, not an error
    code = proc.wait(timeout=seconds + 120)
    stats = Path(f"{prefix}_stats.csv")
    if not stats.is_file():
        raise SystemExit(f"load: locust wrote no {stats} (exit {code})")
    return {"target_rate": rate, **mode_figures(stats, MODES[mode][0])}


def _terminate(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C, so everything started is stopped."""
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="Catalog size.")
    parser.add_argument("--prime", type=int, default=5_000, help="Events replayed first.")
    parser.add_argument("--get-rate", type=float, default=1000.0, help="GET requests/s.")
    parser.add_argument(
        "--get-users", type=int, default=250, help="Users sharing --get-rate (see above)."
    )
    parser.add_argument("--event-rate", type=float, default=500.0, help="Events/s produced.")
    parser.add_argument("--event-users", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=60, help="Length of each mode.")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--modes", default=",".join(MODES), help="Comma-separated modes.")
    parser.add_argument(
        "--together",
        action="store_true",
        help="Then run the modes at once (GET load beside the event stream): load.json's "
        "`together` and `stream_share_under_http` (events/s answered together ÷ alone).",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    console = Console(width=140)
    REPORTS.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    machine = MachineRecord(say=console.print)
    modes: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        step("Kafka")
        connection = start_kafka(stack, Settings())
        step(f"synthetic {args.items:,}-item catalog, IVF index, reranker")
        art = artifacts(args.items)
        step("a worker, 1 compute thread")
        worker = start_worker(stack, connection, art, OUT, args.partitions)
        pid = pid_of(worker.app_id)
        primed = synthetic_events(args.items, args.prime)
        step(f"priming: {len(primed):,} events replayed")
        send(connection, worker, primed, ["--max"])
        events_file = OUT / f"load-{worker.app_id}.msgpack"
        write_events(events_file, primed)  # the users and items locust draws from
        stack.callback(events_file.unlink)
        chosen = args.modes.split(",")
        rates = {
            mode: (args.get_rate, args.get_users)
            if mode == "get_recommendations"
            else (args.event_rate, args.event_users)
            for mode in chosen
        }

        def run(group: list[str], suffix: str = "") -> dict[str, dict[str, Any]]:
            cpu = cpu_seconds(pid)
            started = {
                m: start_locust(
                    m, worker.url, *rates[m], args.seconds, events_file, worker.env, suffix
                )  # fmt: skip
                for m in group
            }
            out = {m: finish_locust(m, r, rates[m][0], args.seconds) for m, r in started.items()}
            # how much of a core the worker got: on a shared machine, often the limit
            for figures in out.values():
                figures["worker_cpu_s"] = round(cpu_seconds(pid) - cpu, 1)
            return out

        for mode in chosen:
            modes.update(run([mode]))
        together = run(chosen, "-together") if args.together else {}
    report = REPORTS / "load.json"
    worker_cpu = sum(m["worker_cpu_s"] for m in modes.values())
    worker_cpu += next(iter(together.values()), {}).get("worker_cpu_s", 0.0)
    result = write_report(report, modes, machine.finish(worker_cpu_s=worker_cpu), together=together)
    console.print(summary_table(result))
    console.print(f"wrote {report}")


if __name__ == "__main__":
    main()
