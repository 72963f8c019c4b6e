"""Real workers through a real broker outage, on a broker of their own (the session's
shared broker is never stopped): /readyz goes false while the broker is away and true
again when it is back, the stream resumes, repeated error lines are held back to one per
kind per interval, and SIGTERM during the outage ends the worker within its bound."""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from worker_support import Topics, Worker, produce_events, read_topic

from streamrec.config import Settings
from streamrec.localkafka import LocalKafka
from streamrec.streams.topics import admin_client, ensure_topics
from streamrec.streams.wire import Event

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOG_INTERVAL_S = 5.0
SHUTDOWN_TIMEOUT_S = 10.0
#: A log line of the worker: "[time] [pid] [LEVEL] message".
LINE = re.compile(r"^\[[^]]+\] \[\d+\] \[(WARNING|ERROR|CRITICAL)\] (.*)$")


@pytest.fixture
def own_broker(free_kafka_port: int) -> Iterator[LocalKafka]:
    broker = LocalKafka(Settings().model_copy(update={"kafka_port": free_kafka_port}))
    with broker.throwaway():
        yield broker


def make_worker(broker: LocalKafka, topics: Topics, artifacts: Path, data_dir: Path) -> Worker:
    return Worker(
        bootstrap=broker.bootstrap,
        topics=topics,
        artifacts=artifacts,
        app_id=f"wt-{uuid.uuid4().hex[:8]}",
        data_dir=data_dir,
        partitions=2,
        extra_env={
            "STREAMREC_WORKER_BROKER_PROBE_S": "1",
            "STREAMREC_WORKER_LOG_INTERVAL_S": str(LOG_INTERVAL_S),
            "STREAMREC_WORKER_SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_TIMEOUT_S),
        },
    )


def readyz(worker: Worker) -> dict:
    try:
        return requests.get(f"{worker.url}/readyz", timeout=5).json()
    except requests.RequestException as exc:
        return {"ready": None, "error": str(exc)}


def wait_for(check, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.5)
    raise AssertionError(f"not {what} after {timeout}s")


def events(prefix: str, n: int) -> list[Event]:
    ts = int(time.time() * 1000)
    return [Event(f"{prefix}-{i}", f"u{i % 7}", str(1 + i % 40), "click", ts + i) for i in range(n)]


def answered(bootstrap: str, topic: str, batch: list[Event]) -> None:
    ids = {e.event_id for e in batch}
    recs = read_topic(bootstrap, topic, lambda v: ids <= {r["event_id"] for r in v})
    assert ids <= {r["event_id"] for r in recs}


def kinds(log: str) -> Counter[str]:
    """WARNING-or-worse lines per kind (digits blanked, a held-back count removed)."""
    found: Counter[str] = Counter()
    for line in log.splitlines():
        if m := LINE.match(line):
            text = re.sub(r" \[\d+ more like this held back\]\s*$", "", m.group(2))
            found[f"{m.group(1)} {re.sub(r'[0-9]+', '#', text)}"] += 1
    return found


def test_readyz_follows_a_broker_outage_and_sigterm_during_it_is_bounded(
    own_broker, artifacts, tmp_path
):
    _, art = artifacts
    names = Topics(*(f"o-{n}-{uuid.uuid4().hex[:8]}" for n in ("ev", "it", "rec", "dlq")))
    with admin_client(own_broker.connection) as admin:
        ensure_topics(admin, [names.events, names.items, names.recommendations, names.dlq], 2)
    watched = make_worker(own_broker, names, art, tmp_path / "watched")
    stopped = make_worker(own_broker, names, art, tmp_path / "stopped")
    stopped.app_id = f"{watched.app_id}-other"  # its own group: both consume everything
    try:
        watched.start()
        stopped.start()
        watched.wait_ready()
        stopped.wait_ready()
        first = events("before", 50)
        produce_events(own_broker.bootstrap, names.events, first)
        answered(own_broker.bootstrap, names.recommendations, first)
        assert readyz(watched)["broker_reachable"] is True

        log_start = len(watched.log())
        own_broker.stop()
        down_at = time.monotonic()
        gone = wait_for(lambda: (r := readyz(watched))["ready"] is False and r, "unready")
        assert gone["broker_reachable"] is False

        stopped.proc.terminate()  # SIGTERM with the broker away
        sent = time.monotonic()
        stopped.proc.wait(timeout=SHUTDOWN_TIMEOUT_S + 60)
        took = time.monotonic() - sent
        print(f"SIGTERM during the outage: exit status {stopped.proc.returncode} after {took:.1f}s")

        # Straight away: the port's TIME_WAIT connections (about 60 s on Linux) do not stop
        # LocalKafka, which checks the port as the JVM binds it, with SO_REUSEADDR.
        own_broker.start()
        outage_s = time.monotonic() - down_at
        wait_for(lambda: readyz(watched)["ready"] is True, "ready again")
        outage_log = watched.log()[log_start:]
        after = events("after", 50)
        produce_events(own_broker.bootstrap, names.events, after)
        answered(own_broker.bootstrap, names.recommendations, after)
    finally:
        watched.stop()
        stopped.stop()

    found = kinds(outage_log)
    print(f"outage of {outage_s:.0f}s: {sum(found.values())} warning/error lines, {found}")
    most = int(outage_s / LOG_INTERVAL_S) + 2
    assert all(n <= most for n in found.values()), found
