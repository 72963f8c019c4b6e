"""``make demo``: the whole system end to end on this machine, in a few minutes.

Starts the local Kafka (unless one runs), fetches MovieLens-100k, trains quick models and
the index on its first 80 %, starts a worker, replays the last 20 % through Kafka at a
steady rate, shows a few users' recommendations before and after their next event (sent
through ``POST /events``), and prints the event → recommendation latency measured from
Kafka's own timestamps: the event's append to ``events`` and its recommendation's append
to ``recommendations``. Then it stops everything it started and deletes its topics, and
ends with the live HR@10 of its two A/B variants from the worker's own counters.

Each run uses its own topics and consumer group, so runs never see each other's data.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests
from kafka import KafkaConsumer, TopicPartition
from rich.console import Console

from streamrec.cli.live import LiveCounts, proportion_interval, scrape
from streamrec.config import InvalidSettings, Settings, load_settings
from streamrec.localkafka import LocalKafka
from streamrec.streams.connection import KafkaConnection
from streamrec.streams.core.artifacts import Artifacts
from streamrec.streams.core.loader import gate_failure
from streamrec.streams.record import messages_to_end
from streamrec.streams.recorded import read_events, write_events
from streamrec.streams.topics import admin_client, delete_topics, ensure_topics
from streamrec.streams.wire import Event, unpack

console = Console()
STREAMREC = str(Path(sys.executable).with_name("streamrec"))
#: Events per second the demo replays at: steady, well below one worker's capacity, so
#: the latency shown is the system's, not a queue's.
REPLAY_RATE = 500
#: Held-out events kept back from the replay, to be sent one by one as "next events".
SHOWN_USERS = 3
#: The demo's A/B test: the served configuration against retrieval + co-visitation.
DEMO_VARIANTS = [
    {"name": "control", "share": 0.5},
    {"name": "covis", "share": 0.5, "reranker": "", "engine": {"covis_weight": 4.0}},
]


def step(message: str) -> None:
    """Announce one step of a long run."""
    console.print(f"[bold cyan]==>[/] {message}", highlight=False)


def streamrec(args: Sequence[str], env: dict[str, str] | None = None, check: bool = True) -> int:
    """Run one streamrec command, its output shown as it comes."""
    code = subprocess.call([STREAMREC, *args], env=env)
    if check and code != 0:
        raise SystemExit(f"demo: `streamrec {' '.join(args)}` failed (exit {code})")
    return code


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_data(out: Path) -> tuple[Path, Path]:
    """MovieLens-100k split by time: (train part, test part)."""
    data = out / "ml100k.msgpack"
    parts = out / "ml100k.train.msgpack", out / "ml100k.test.msgpack"
    if not all(p.exists() for p in parts):
        streamrec(["data", "movielens", "--variant", "100k", "--out", str(data)])
        streamrec(["data", "split", str(data), "--train", "0.8", "--out-dir", str(out)])
    return parts


def train(train_part: Path, artifacts: Path) -> None:
    """Quick models and the index; reused when a previous demo run left them."""
    layout = Artifacts(artifacts)
    if layout.manifest.is_file() and layout.index.is_dir():
        console.print(f"reusing the models in {artifacts}")
        return
    code = streamrec(
        ["train", "--quick", "--events", str(train_part), "--out", str(artifacts)], check=False
    )
    if not layout.manifest.is_file():
        raise SystemExit(f"demo: `streamrec train` wrote no models (exit {code})")


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    """Until the worker at ``url`` answers /readyz with 200 (or exits: then fail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: the worker exited (code {proc.returncode}); see {log}")
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit(f"demo: the worker was not ready in {timeout:.0f} s; see {log}")


def show(title: str, rec: dict) -> None:
    items = ", ".join(rec["items"][:8])
    console.print(f"    {title:<7} ({rec['source']}) {items} …", highlight=False)


def next_events(test_part: Path, held: int) -> tuple[list[Event], list[Event]]:
    """The replayed part, and each shown user's next event after it."""
    events = list(read_events(test_part))
    replayed, rest = events[:-held], events[-held:]
    seen = {e.user_id for e in replayed}
    shown: dict[str, Event] = {}
    for event in rest:
        if event.user_id in seen and event.user_id not in shown:
            shown[event.user_id] = event
        if len(shown) == SHOWN_USERS:
            break
    return replayed, list(shown.values())


def timestamps(connection: KafkaConnection, topic: str, key: str, ids: set[str]) -> dict[str, int]:
    """event_id -> Kafka append timestamp (ms) of the messages of ``topic`` naming them."""
    found: dict[str, int] = {}
    for record in messages_to_end(connection, topic):
        event_id = unpack(record.value).get(key)
        if event_id in ids and event_id not in found:
            found[event_id] = record.timestamp
    return found


def wait_for_recs(
    connection: KafkaConnection, topic: str, ids: set[str], timeout: float = 120
) -> None:
    """Until every id in ``ids`` has its recommendation on ``topic``; one consumer reads on
    from where it was (re-reading the topic would steal the worker's CPU)."""
    consumer = KafkaConsumer(**connection.client_options(), enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        missing = set(ids)
        deadline = time.monotonic() + timeout
        while missing:
            if time.monotonic() > deadline:
                raise SystemExit(f"demo: {len(missing):,} events got no recommendation in time")
            for batch in consumer.poll(timeout_ms=500).values():
                missing.difference_update(unpack(r.value).get("event_id") for r in batch)
    finally:
        consumer.close()


@dataclass
class RunningWorker:
    """A worker subprocess with its own topics, consumer group and HTTP port."""

    app_id: str
    url: str
    topics: dict[str, str]  # events, items, recs, dlq -> topic name
    env: dict[str, str]  # the environment that points streamrec commands at them
    log: Path
    pid: int


def start_worker(
    stack: ExitStack,
    connection: KafkaConnection,
    artifacts: Path,
    out: Path,
    partitions: int,
    settings_env: dict[str, str] | None = None,
    *,
    join: RunningWorker | None = None,
) -> RunningWorker:
    """Create run-unique topics, start ``streamrec worker`` on them and wait until it is
    ready; ``stack`` stops the worker and deletes the topics (changelogs too).

    ``join``: start another worker of that one's app instead (its topics, environment and
    consumer group; its own port and data directory), so the partitions are shared: it is
    ready once the rebalance its joining starts has given it its partitions."""
    if join is None:
        app_id = f"demo-{uuid.uuid4().hex[:8]}"
        names = {k: f"{app_id}-{k}" for k in ("events", "items", "recs", "dlq")}
        with admin_client(connection) as admin:
            ensure_topics(admin, list(names.values()), partitions)
        changelogs = [f"{app_id}-{table}-changelog" for table in ("user_state", "recs")]
        stack.callback(delete_all, connection, [*names.values(), *changelogs])
        env = {
            **os.environ,
            "STREAMREC_KAFKA_BOOTSTRAP": connection.bootstrap,
            "STREAMREC_TOPIC_EVENTS": names["events"],
            "STREAMREC_TOPIC_ITEMS": names["items"],
            "STREAMREC_TOPIC_RECOMMENDATIONS": names["recs"],
            "STREAMREC_TOPIC_DLQ": names["dlq"],
            "STREAMREC_PARTITIONS": str(partitions),
            **(settings_env or {}),
        }
    else:
        app_id, names, env = join.app_id, join.topics, join.env
    port = free_port()
    data_dir = out / "worker" if join is None else out / f"worker-{port}"
    log = out / (f"worker-{app_id}.log" if join is None else f"worker-{app_id}-{port}.log")
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [STREAMREC, "worker", "--no-create-topics", "--artifacts", str(artifacts),
             "--app-id", app_id, "--web-port", str(port),
             "--data-dir", str(data_dir), "--loglevel", "info"],
            env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    stack.callback(stop_process, proc)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc, log)
    return RunningWorker(app_id, url, names, env, log, proc.pid)


def main() -> int:
    try:
        settings = load_settings()
    except InvalidSettings as exc:
        console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        return 1
    out = Path("out/demo").absolute()
    out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        step("Kafka")
        connection = start_kafka(stack, settings)

        step("MovieLens-100k, split by time 80/20")
        train_part, test_part = prepare_data(out)
        step("quick models and the index on the first 80 %")
        artifacts = out / "artifacts"
        train(train_part, artifacts)

        step("a worker serving two A/B variants: student reranker vs co-visitation")
        worker_env = {"STREAMREC_VARIANTS": json.dumps(DEMO_VARIANTS)}
        if gate_failure(artifacts) is not None:  # the demo can still show a busy run's models
            console.print(
                "[yellow]note:[/] the quick models missed their training gate (see "
                "above); the demo's worker serves them anyway",
                highlight=False,
            )
            worker_env["STREAMREC_ALLOW_FAILED_MODEL"] = "true"
        worker = start_worker(stack, connection, artifacts, out, settings.partitions, worker_env)
        url, names, env = worker.url, worker.topics, worker.env
        console.print(f"    ready at {url} (log {worker.log})", highlight=False)

        replayed, shown = next_events(test_part, held=2_000)
        replay_file = out / f"replay-{worker.app_id}.msgpack"
        write_events(replay_file, replayed)
        stack.callback(replay_file.unlink)
        step(f"replaying {len(replayed):,} held-out events at {REPLAY_RATE:,}/s")
        streamrec(
            ["replay", str(replay_file), "--topic", names["events"], "--rate", str(REPLAY_RATE)],
            env=env,
        )
        ids = {e.event_id for e in replayed}
        wait_for_recs(connection, names["recs"], ids)

        step("a few users, before and after their next event (sent with POST /events)")
        for event in shown:
            before = requests.get(f"{url}/recommendations/{event.user_id}", timeout=10).json()
            posted = requests.post(f"{url}/events", json=event.to_map(), timeout=10)
            posted.raise_for_status()
            after = _recs_after(url, event)
            console.print(
                f"  user {event.user_id} {event.action}s item {event.item_id}:", highlight=False
            )
            show("before", before)
            show("after", after)

        p50, p99, n, rate = latency(connection, names, ids)
        console.print(
            f"event→recommendation latency: p50={p50:.1f} ms p99={p99:.1f} ms over "
            f"{n:,} events ({rate:,.0f} events/s)",
            highlight=False,
            soft_wrap=True,  # the summary stays one line, whatever the terminal width
        )
        quality = live_line(scrape([url], settings.reveal("worker_auth_token")))
    console.print(quality, highlight=False, soft_wrap=True)  # the last line, after clean-up
    return 0


def live_line(counts: dict[str, LiveCounts]) -> str:
    """``live HR@10 over N events: …`` per variant, from the worker's own live counters."""
    total = sum(c.scored for c in counts.values())
    parts = []
    for name in sorted(counts, key=lambda v: (v != DEMO_VARIANTS[0]["name"], v)):
        c = counts[name]
        p = c.hr(10)
        parts.append(f"{name} {p:.4f} ± {proportion_interval(p, c.scored):.4f} ({c.scored:,.0f})")
    return f"live HR@10 over {total:,.0f} events: " + ", ".join(parts)


def latency(
    connection: KafkaConnection, topics: dict[str, str], ids: set[str]
) -> tuple[float, float, int, float]:
    """(p50 ms, p99 ms, events, events/s) of event → recommendation for ``ids``: from each
    event's Kafka timestamp on ``events`` to its recommendation's on ``recommendations``
    (create time, stamped by the producers: one clock on one host), and the rate from the
    first event to the last recommendation."""
    sent = timestamps(connection, topics["events"], "event_id", ids)
    emitted = timestamps(connection, topics["recs"], "event_id", ids)
    latencies = np.array([emitted[i] - sent[i] for i in ids if i in sent and i in emitted])
    span_s = max(1e-3, (max(emitted.values()) - min(sent.values())) / 1000)
    p50, p99 = np.percentile(latencies, [50, 99])
    return float(p50), float(p99), len(latencies), len(latencies) / span_s


def start_kafka(stack: ExitStack, settings: Settings) -> KafkaConnection:
    """The connection to a running cluster; a local broker started here is stopped by
    ``stack``, one that already ran is left running."""
    kafka = LocalKafka(settings)
    status = kafka.start(on_step=lambda s: console.print(f"    {s}"))
    if not status.external and not status.already_running:
        stack.callback(kafka.stop)
    console.print(f"    {status.describe()}", highlight=False)
    return settings.kafka_connection


def _recs_after(url: str, event: Event, timeout: float = 30) -> dict:
    """The user's recommendations once the worker has answered ``event``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = requests.get(f"{url}/recommendations/{event.user_id}", timeout=10).json()
        if rec.get("event_id") == event.event_id:
            return rec
        time.sleep(0.1)
    raise SystemExit(f"demo: no recommendation for event {event.event_id} in {timeout:.0f} s")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if it has not exited within a minute."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def delete_all(connection: KafkaConnection, topics: list[str]) -> None:
    """Delete topics (missing ones are fine)."""
    with admin_client(connection) as admin:
        delete_topics(admin, topics)


if __name__ == "__main__":
    sys.exit(main())
