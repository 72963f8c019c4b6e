"""Helpers for the worker integration tests: real ``streamrec worker`` subprocesses on the
session's real broker, each with its own app id, topics, HTTP port and store directory.

The artifacts (MovieLens-100k, ``streamrec train --quick``) are built once per test
session on disk and shared by every module that asks for them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import pytest
import requests
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamrec.streams.connection import KafkaConnection
from streamrec.streams.reach import checked
from streamrec.streams.record import messages_to_end
from streamrec.streams.recorded import read_events
from streamrec.streams.wire import Event, decode_recommendation, encode_event

#: Events of MovieLens-100k the tests replay (time order, the first N).
ML100K = "ml100k.msgpack"
#: The console script of this environment (beside its python).
STREAMREC = [str(Path(sys.executable).with_name("streamrec"))]


def _run(args: Sequence[str], *, check: bool = True, timeout: float = 600) -> str:
    """Run a streamrec command; its output, or a RuntimeError with it when ``check`` fails."""
    result = subprocess.run([*STREAMREC, *args], capture_output=True, text=True, timeout=timeout)
    output = f"{result.stdout}\n{result.stderr}"
    if check and result.returncode != 0:
        raise RuntimeError(f"streamrec {' '.join(args)} failed:\n{output}")
    return output


def session_artifacts(base: Path) -> tuple[Path, Path]:
    """(MovieLens-100k stream, artifacts dir of ``train --quick`` on it), built once."""
    data = base / "worker-data" / ML100K
    if not data.exists():
        data.parent.mkdir(parents=True, exist_ok=True)
        _run(["data", "movielens", "--variant", "100k", "--out", str(data)])
    prebuilt = os.environ.get("STREAMREC_TEST_ARTIFACTS")  # reuse a `train --quick` output
    if prebuilt:
        return data, Path(prebuilt)
    artifacts = base / "worker-artifacts"
    done = artifacts / ".complete"
    if not done.exists():
        # The quality gate of `train` judges the models, not the worker: a quick run that
        # misses it still writes complete artifacts (marked failed, so workers are started
        # with STREAMREC_ALLOW_FAILED_MODEL unless a test says otherwise, see Worker.env).
        output = _run(
            ["train", "--quick", "--events", str(data), "--out", str(artifacts)], check=False
        )
        if not ((artifacts / "index").is_dir() and (artifacts / "manifest.json").is_file()):
            raise RuntimeError(f"streamrec train --quick wrote no artifacts:\n{output}")
        done.touch()
    return data, artifacts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Topics:
    """One test's own topic names."""

    events: str
    items: str
    recommendations: str
    dlq: str

    @classmethod
    def make(
        cls, make_topic: Callable[..., str], partitions: int, events: str | None = None
    ) -> Topics:
        """Fresh topics; ``events`` shares an existing events topic (two independent apps)."""
        return cls(
            events or make_topic("w-ev", partitions),
            *(make_topic(f"w-{name}", partitions) for name in ("it", "rec", "dlq")),
        )


@dataclass
class Worker:
    """A ``streamrec worker`` subprocess."""

    bootstrap: str
    topics: Topics
    artifacts: Path
    app_id: str
    data_dir: Path
    partitions: int
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    args: Sequence[str] = ()  # more `streamrec worker` options
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
        env["STREAMREC_ALLOW_FAILED_MODEL"] = "true"  # see session_artifacts; extra_env may undo
        env.update(
            STREAMREC_KAFKA_BOOTSTRAP=self.bootstrap,
            STREAMREC_TOPIC_EVENTS=self.topics.events,
            STREAMREC_TOPIC_ITEMS=self.topics.items,
            STREAMREC_TOPIC_RECOMMENDATIONS=self.topics.recommendations,
            STREAMREC_TOPIC_DLQ=self.topics.dlq,
            STREAMREC_PARTITIONS=str(self.partitions),
            STREAMREC_WORKER_APP_ID=self.app_id,
            STREAMREC_WORKER_WEB_PORT=str(self.port),
            STREAMREC_WORKER_DATA_DIR=str(self.data_dir),
            STREAMREC_WORKER_ARTIFACTS_DIR=str(self.artifacts),
            # A killed worker's partitions move on within seconds, not a minute.
            STREAMREC_WORKER_SESSION_TIMEOUT_S="6",
            STREAMREC_WORKER_HEARTBEAT_INTERVAL_S="1",
            STREAMREC_WORKER_STANDBY_REPLICAS="1",
            **self.extra_env,
        )
        return env

    def start(self) -> Worker:
        self.starts += 1
        self.log_path = self.data_dir / f"worker-{self.port}-{self.starts}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*STREAMREC, "worker", "--no-create-topics", "--loglevel", "info", *self.args],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"worker exited early:\n{self.log()[-4000:]}")
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.log()[-4000:]}")

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(f"{self.url}{path}", params=params, timeout=10)

    def metric(self, name: str) -> float:
        """Sum of every sample of metric ``name`` (all label sets) at /metrics."""
        total = 0.0
        for line in self.get("/metrics").text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


@pytest.fixture
def new_worker(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """``new_worker(topics, artifacts, app_id=None, partitions=4, args=(), **env) -> Worker``
    (not yet started; ``args``: more worker options); every worker made is stopped at the end
    of the test."""
    made: list[Worker] = []

    def make(
        topics: Topics,
        artifacts: Path,
        app_id: str | None = None,
        partitions: int = 4,
        args: Sequence[str] = (),
        **env: str,
    ) -> Worker:
        worker = Worker(
            bootstrap=kafka_bootstrap,
            topics=topics,
            artifacts=artifacts,
            app_id=app_id or f"wt-{uuid.uuid4().hex[:8]}",
            data_dir=tmp_path / f"store-{len(made)}",
            partitions=partitions,
            extra_env={f"STREAMREC_{k.upper()}": v for k, v in env.items()},
            args=args,
        )
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.stop()


def wait_for(
    condition: Callable[[], bool],
    timeout: float = 60.0,
    describe: Callable[[], object] | None = None,
) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds, saying
    what ``describe`` returns then (the figures the condition was waiting on)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {describe() if describe else ''}"
        time.sleep(0.2)


def first_events(path: Path, n: int) -> list[Event]:
    events = []
    for event in read_events(path):
        events.append(event)
        if len(events) == n:
            break
    return events


def connection_to(where: KafkaConnection | str) -> KafkaConnection:
    """``where`` itself, or a PLAINTEXT connection to the bootstrap servers it names."""
    return where if isinstance(where, KafkaConnection) else KafkaConnection(where)


def produce(
    where: KafkaConnection | str, topic: str, records: Iterable[tuple[bytes | None, bytes]]
) -> int:
    """Send (key, value) records in order; returns how many, once all are acknowledged."""
    producer = checked(KafkaProducer, connection_to(where))(acks="all", linger_ms=5)
    count = 0
    for key, value in records:
        producer.send(topic, key=key, value=value)
        count += 1
    producer.flush()
    producer.close()
    return count


def produce_events(where: KafkaConnection | str, topic: str, events: Iterable[Event]) -> int:
    return produce(where, topic, ((e.user_id.encode(), encode_event(e)) for e in events))


def paced_replay(bootstrap: str, topic: str, events: Sequence[Event]) -> threading.Thread:
    """Start producing ``events`` to ``topic`` at a steady pace (250 every 0.1 s) in a
    thread, so that a kill lands mid-stream with work in flight; join it to wait."""

    def replay() -> None:
        for start in range(0, len(events), 250):
            produce_events(bootstrap, topic, events[start : start + 250])
            time.sleep(0.1)

    producer = threading.Thread(target=replay)
    producer.start()
    return producer


def read_topic(
    where: KafkaConnection | str,
    topic: str,
    until: Callable[[list[Any]], bool],
    decode: Callable[[bytes], Any] = decode_recommendation,
    timeout: float = 120.0,
) -> list[Any]:
    """Read ``topic`` from the beginning (all partitions, no group) until ``until(values)``
    holds or ``timeout`` passes; values in partition order."""
    consumer = checked(KafkaConsumer, connection_to(where))(enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        values: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(values):
            for batch in consumer.poll(timeout_ms=500).values():
                values.extend(decode(r.value) for r in batch)
        return values
    finally:
        consumer.close()


def changelog_states(
    where: KafkaConnection | str, app_id: str, table: str = "user_state"
) -> dict[str, Any]:
    """The latest value per key of a worker table, read from its changelog topic."""
    latest: dict[str, Any] = {}
    for r in messages_to_end(connection_to(where), f"{app_id}-{table}-changelog"):
        key = r.key.decode()
        if r.value is None:
            latest.pop(key, None)
        else:
            latest[key] = msgpack.unpackb(r.value, raw=False)
    return latest
