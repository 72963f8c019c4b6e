"""The local broker: its life cycle through the CLI, and that the pinned Kafka version
works with every client streamrec uses (kafka-python, aiokafka, a Faust app with a table).

The client checks run against the session broker (``kafka_bootstrap``); the life-cycle test
needs a broker it may stop, so it starts one more on a port of its own (marked slow).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from streamrec.config import Settings
from streamrec.localkafka import LocalKafka
from streamrec.streams.connection import KafkaConnection
from streamrec.streams.record import messages_to_end

pytestmark = pytest.mark.integration

N_MESSAGES = 200


def streamrec_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the ``streamrec`` command line in a fresh process with exactly ``env``."""
    return subprocess.run(
        [sys.executable, "-c", "from streamrec.cli import main; main()", *args],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def cli_env(**overrides: str) -> dict[str, str]:
    """The current environment without an external cluster, plus ``overrides``; wide enough
    that rich does not wrap a one-line message."""
    env = {k: v for k, v in os.environ.items() if k != "STREAMREC_KAFKA_BOOTSTRAP"}
    env["COLUMNS"] = "300"
    env.update(overrides)
    return env


def running(pid: int) -> bool:
    """Whether ``pid`` still runs (an exited broker whose new parent has not reaped it yet
    lingers as a zombie: that counts as stopped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
def test_start_twice_status_and_stop_through_the_cli(free_kafka_port: int) -> None:
    port = free_kafka_port
    env = cli_env(STREAMREC_KAFKA_PORT=str(port))
    broker = LocalKafka(Settings(kafka_port=port))
    try:
        first = streamrec_cli("kafka", "start", env=env)
        assert first.returncode == 0, first.stderr
        pid = broker.pid()
        assert pid is not None
        assert f"127.0.0.1:{port}" in first.stdout

        second = streamrec_cli("kafka", "start", env=env)
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stdout
        assert broker.pid() == pid

        status = streamrec_cli("kafka", "status", env=env)
        assert status.returncode == 0, status.stderr
        assert "running" in status.stdout
        assert f"127.0.0.1:{port}" in status.stdout
        assert f"pid {pid}" in status.stdout
        assert str(broker.log_file) in status.stdout
        assert str(broker.data_dir) in status.stdout

        stopped = streamrec_cli("kafka", "stop", env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert not running(pid)
        assert broker.pid() is None

        after = streamrec_cli("kafka", "status", env=env)
        assert after.returncode == 3, after.stderr
        assert "stopped" in after.stdout
        again = streamrec_cli("kafka", "stop", env=env)
        assert again.returncode == 0, again.stderr
    finally:
        broker.stop()
        shutil.rmtree(broker.run_dir, ignore_errors=True)


def test_start_without_java_says_what_to_install(tmp_path: Path, free_kafka_port: int) -> None:
    env = cli_env(
        PATH="", STREAMREC_KAFKA_PORT=str(free_kafka_port), STREAMREC_CACHE_DIR=str(tmp_path)
    )
    done = streamrec_cli("kafka", "start", env=env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "java" in lines[0]
    assert "apt-get install openjdk-17-jre-headless" in lines[0]
    assert not any(tmp_path.iterdir())  # nothing was assembled or started


def test_start_with_a_java_older_than_17_says_so(tmp_path: Path, free_kafka_port: int) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "java"
    fake.write_text("#!/bin/sh\necho 'java version \"1.8.0_292\"' >&2\n")
    fake.chmod(0o755)
    env = cli_env(
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        STREAMREC_KAFKA_PORT=str(free_kafka_port),
        STREAMREC_CACHE_DIR=str(tmp_path / "cache"),
    )
    done = streamrec_cli("kafka", "start", env=env)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: `{fake}` is Java 8; Kafka 4 needs Java 17+: install Java 17+ "
        "(e.g. `apt-get install openjdk-17-jre-headless`)"
    )


def test_an_external_cluster_is_used_and_nothing_is_started(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = cli_env(STREAMREC_KAFKA_BOOTSTRAP=kafka_bootstrap, STREAMREC_CACHE_DIR=str(tmp_path))
    for command in ("start", "status", "stop"):
        done = streamrec_cli("kafka", command, env=env)
        assert done.returncode == 0, done.stderr
        assert f"external cluster {kafka_bootstrap} answers" in done.stdout
    assert not any(tmp_path.iterdir())


def test_kafka_python_produces_consumes_and_administers(kafka_bootstrap: str, make_topic) -> None:
    topic = make_topic("compat-kp")
    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap, linger_ms=5, compression_type="zstd"
    )
    for i in range(N_MESSAGES):
        producer.send(topic, key=f"u{i % 17}".encode(), value=f"m{i}".encode())
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        consumer_timeout_ms=20_000,
    )
    values = []
    for message in consumer:
        values.append(message.value.decode())
        if len(values) == N_MESSAGES:
            break
    consumer.commit()
    group = consumer.config["group_id"]
    consumer.close()
    assert sorted(values) == sorted(f"m{i}" for i in range(N_MESSAGES))

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert len(admin.describe_cluster()["brokers"]) == 1
        assert topic in admin.list_topics()
        committed = admin.list_group_offsets(group)[group]
        assert sum(meta.offset for meta in committed.values()) == N_MESSAGES
        assert group in {listed["group_id"] for listed in admin.list_groups()}
    finally:
        admin.close()


def test_aiokafka_produces_and_consumes(kafka_bootstrap: str, make_topic) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = make_topic("compat-aio")

    async def roundtrip() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
        await producer.start()
        try:
            for i in range(N_MESSAGES):
                await producer.send(topic, key=f"u{i % 13}".encode(), value=f"a{i}".encode())
            await producer.flush()
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=f"g-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        got: list[bytes] = []
        try:
            async with asyncio.timeout(30):
                while len(got) < N_MESSAGES:
                    batches = await consumer.getmany(timeout_ms=1000)
                    got.extend(m.value for msgs in batches.values() for m in msgs)
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(roundtrip())
    assert sorted(got) == sorted(f"a{i}".encode() for i in range(N_MESSAGES))


FAUST_APP = """
import json
import faust

app = faust.App(
    {app_id!r}, broker="kafka://{bootstrap}", store="memory://", web_enabled=False,
    topic_partitions=8, topic_replication_factor=1, datadir={datadir!r},
)
source = app.topic({topic!r}, key_type=str, value_type=str, key_serializer="raw",
                   value_serializer="raw")
# user -> the distinct messages it sent: exact under Faust's at-least-once delivery (a
# rebalance on a busy machine hands a worker its uncommitted events again).
messages = app.Table("messages", default=list, partitions=8)
earlier = []  # messages of an earlier run handed to this one: it did not go on where it left off
found = {{}}  # user -> how many messages the table held for them at this run's first event

@app.timer(0.1)
async def ready():  # the worker is ready once its table is recovered and its flow resumed
    if app.tables.recovery.completed.is_set() and app.consumer.flow_active:
        open({result!r} + ".ready", "w").close()

@app.agent(source)
async def count(stream):
    async for user, message in stream.items():
        if not message.startswith({run!r}):
            earlier.append(message)
        found.setdefault(user, len(messages[user]))
        if message not in messages[user]:
            messages[user] = messages[user] + [message]
        held = sum(len(m) for m in messages.values())
        with open({result!r} + ".progress", "w") as out:  # what a timeout reports
            json.dump({{"held": held, "found_at_first_event": found, "earlier": earlier}}, out)
        if held == {total}:
            with open({result!r}, "w") as out:
                json.dump({{"counts": {{u: len(m) for u, m in messages.items()}},
                           "found": found, "earlier": earlier}}, out)

if __name__ == "__main__":
    faust.Worker(app, loglevel="WARNING").execute_from_commandline()
"""


def uncommitted(bootstrap: str, group: str, topic: str) -> dict[int, tuple[int, int]]:
    """The partitions of ``topic`` that consumer group ``group`` has not committed up to
    their end offset (a stopped worker would be handed those again): partition -> (committed
    offset, end offset)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        committed = admin.list_group_offsets(group).get(group, {})
        ends = consumer.end_offsets(
            [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        )
    finally:
        consumer.close()
        admin.close()
    assert ends, f"{topic} has no partitions"
    # A partition the group never committed is read from its start (Faust's default).
    done = {tp: c.offset for tp, c in committed.items()}
    return {
        tp.partition: (done.get(tp, 0), end) for tp, end in ends.items() if done.get(tp, 0) != end
    }


def changelog_counts(bootstrap: str, changelog: str) -> dict[str, int]:
    """How many messages the table's latest changelog record holds for each user, read from
    the start of ``changelog`` up to its end offsets (what a restarted worker recovers)."""
    latest = {r.key: r.value for r in messages_to_end(KafkaConnection(bootstrap), changelog)}
    return {json.loads(k): len(json.loads(v)) for k, v in latest.items()}


def run_faust_app(
    script: Path,
    result: Path,
    bootstrap: str,
    group: str,
    topic: str,
    changelog: str,
    send: Callable[[], None],
) -> None:
    """Start the Faust worker script; once it is ready (its table recovered, its flow
    resumed), ``send`` its messages; run it until it has written ``result``, committed the
    whole topic and its changelog holds the table it wrote, then stop it with SIGTERM as an
    operator would; fail with its output if it fails.

    Two flaws of stock Faust (faust-streaming 0.15.3) are kept out of the way, as they are
    not what this test is about (streamrec's worker has its own answers, below):

    - **Messages waiting at start-up.** A restarted Faust worker that finds its messages
      already on the topic occasionally never hands one of them to its agent and commits
      past it: in loops here with both cores busy, 6 of 14 second runs held 399 of 400,
      each with its table recovered right (every user's count at its first event was the
      changelog's) and every partition committed to its end. So the messages are sent once
      the worker is ready. streamrec's worker restarted on waiting events must answer every
      one (``test_worker_group.py``).
    - **The last table write at stop.** Faust's producer buffer ``flush`` (run before each
      commit and on stop) gives up after 0.1 s without a send and does not count the record
      being sent, so a stop right after the commit can drop the last changelog record. So
      the stop waits for the changelog to hold the table. streamrec's worker sends its
      changelog records itself and awaits them before a batch is committable
      (``streams/emit.py``).

    The stop comes from outside, after the commit: a worker killed from inside its last
    event has not acked that event yet, and whether Faust commits it on the way down is a
    race (the next run would count it twice)."""
    result.unlink(missing_ok=True)
    ready = result.with_name(result.name + ".ready")
    ready.unlink(missing_ok=True)
    worker = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    sent = False

    def behind() -> str | None:
        """None once the worker is done; else what it still lacks (sending its messages
        once it is ready)."""
        nonlocal sent
        if not sent:
            if not ready.exists():
                return "readiness"
            send()
            sent = True
        if not result.exists():
            return "its result"
        if lag := uncommitted(bootstrap, group, topic):
            return f"offsets (committed, end) on partitions {lag}"
        table = json.loads(result.read_text())["counts"]
        if (logged := changelog_counts(bootstrap, changelog)) != table:
            return f"the changelog's table {logged} (its table: {table})"
        return None

    try:
        deadline = time.monotonic() + 300
        while (lacking := behind()) is not None:
            assert worker.poll() is None, worker.communicate()[0][-3000:]
            if time.monotonic() > deadline:  # say how far it got and what Faust logged
                worker.kill()
                progress = result.with_name(result.name + ".progress")
                held = progress.read_text() if progress.exists() else "nothing"
                raise AssertionError(
                    f"the Faust worker did not finish: it lacked {lacking}; its progress: "
                    f"{held}; the changelog's table: {changelog_counts(bootstrap, changelog)}; "
                    "(committed, end) by partition behind: "
                    f"{uncommitted(bootstrap, group, topic)}; its output:\n"
                    + worker.communicate()[0][-3000:]
                )
            time.sleep(0.5)
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=60)[0]
    finally:
        worker.kill()
    assert worker.returncode == 0, output[-3000:]
    after = uncommitted(bootstrap, group, topic)
    assert after == {}, f"after the stop, (committed, end) by partition: {after}"


def produce(bootstrap: str, topic: str, run: str, keys: list[str]) -> None:
    """Send one message per key, each value unique: ``{run}-{i}``."""
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i, key in enumerate(keys):
        producer.send(topic, key=key.encode(), value=f"{run}-{i}".encode())
    producer.flush()
    producer.close()


@pytest.mark.slow
def test_a_faust_app_with_a_table_processes_stops_and_recovers_its_table(
    kafka_bootstrap: str, make_topic, tmp_path: Path
) -> None:
    """Faust creates its own changelog topic through the admin API (the broker does not
    auto-create topics), commits its offsets, stops cleanly on SIGTERM, and a restarted worker
    rebuilds the table from the changelog and carries on where it left off."""
    topic = make_topic("compat-faust")
    app_id = f"compat-{uuid.uuid4().hex[:8]}"
    result = tmp_path / "result.json"
    changelog = f"{app_id}-messages-changelog"

    def run(tag: str, keys: list[str], total: int) -> dict:
        """Send ``keys`` tagged ``tag``, run the worker until its table holds ``total``
        messages and it committed the topic, stop it; what it wrote."""
        script = tmp_path / f"app-{tag}.py"
        script.write_text(
            textwrap.dedent(FAUST_APP).format(
                app_id=app_id, bootstrap=kafka_bootstrap, topic=topic, run=tag, total=total,
                datadir=str(tmp_path / "faust"), result=str(result),
            )
        )  # fmt: skip
        run_faust_app(
            script, result, kafka_bootstrap, app_id, topic, changelog,
            lambda: produce(kafka_bootstrap, topic, tag, keys),
        )  # fmt: skip
        return json.loads(result.read_text())

    first = {f"u{i}": N_MESSAGES // 10 for i in range(10)}
    assert run("first", [f"u{i % 10}" for i in range(N_MESSAGES)], N_MESSAGES) == {
        "counts": first,
        "found": dict.fromkeys(first, 0),
        "earlier": [],
    }
    # Only u0..u4 this time; the restarted worker starts from the changelog's table (each
    # user's first message finds the first run's count) and is never handed the first run's
    # messages (their offsets were committed).
    second = {key: count + (N_MESSAGES // 5 if key < "u5" else 0) for key, count in first.items()}
    assert run("second", [f"u{i % 5}" for i in range(N_MESSAGES)], 2 * N_MESSAGES) == {
        "counts": second,
        "found": {f"u{i}": N_MESSAGES // 10 for i in range(5)},
        "earlier": [],
    }

    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    assert len(consumer.partitions_for_topic(changelog) or ()) == 8
    consumer.close()
    assert changelog_counts(kafka_bootstrap, changelog) == second
