"""Kafka security end to end, on a second local broker with a SASL_SSL listener.

The broker is the project's own (``LocalKafka``), started with
``STREAMREC_KAFKA_SECURITY_PROTOCOL=SASL_SSL``: certificates made by keytool, the SCRAM user
created by ``kafka-storage format --add-scram``. Every streamrec client is then driven the
way a user would drive it against a managed cluster, through environment variables only:
topic creation, replay, record and a worker. A wrong password and a stopped broker must
each fail with one line saying what is wrong, and no secret may appear in any output.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from worker_support import STREAMREC, Topics, Worker, first_events, produce_events, read_topic

from streamrec.config import Settings
from streamrec.localkafka import LocalKafka
from streamrec.streams.connection import KafkaConnection
from streamrec.streams.record import messages_to_end
from streamrec.streams.recorded import read_records

pytestmark = pytest.mark.integration

USER = "streamrec-test"
PASSWORD = f"pw-{uuid.uuid4().hex}"  # a value no output can contain by chance
TOKEN = f"tok-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def sasl_broker(port_pairs: Callable[[], int]) -> Iterator[LocalKafka]:
    """A local broker whose only client listener is SASL_SSL with SCRAM user ``USER``."""
    settings = Settings().model_copy(
        update={
            "kafka_bootstrap": None,
            "kafka_port": port_pairs(),
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": USER,
            "kafka_sasl_password": SecretStr(PASSWORD),
        }
    )
    broker = LocalKafka(settings)
    with broker.throwaway():
        yield broker


def security_env(connection: KafkaConnection, **overrides: str) -> dict[str, str]:
    """The environment a user sets to reach ``connection``'s cluster (plus ``overrides``)."""
    assert connection.sasl_password is not None and connection.ssl_cafile is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    env.update(
        COLUMNS="300",
        STREAMREC_KAFKA_BOOTSTRAP=connection.bootstrap,
        STREAMREC_KAFKA_SECURITY_PROTOCOL=connection.security_protocol,
        STREAMREC_KAFKA_SSL_CAFILE=str(connection.ssl_cafile),
        STREAMREC_KAFKA_SASL_MECHANISM=connection.sasl_mechanism,
        STREAMREC_KAFKA_SASL_USERNAME=connection.sasl_username or "",
        STREAMREC_KAFKA_SASL_PASSWORD=connection.sasl_password.get_secret_value(),
        STREAMREC_WORKER_AUTH_TOKEN=TOKEN,
    )
    return env | overrides


def streamrec(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The timeout only stops a hang from stalling the suite; the checks are on the output.
    return subprocess.run(
        [*STREAMREC, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def topic_env(prefix: str, partitions: int) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return {
        "STREAMREC_TOPIC_EVENTS": f"{prefix}-ev-{suffix}",
        "STREAMREC_TOPIC_ITEMS": f"{prefix}-it-{suffix}",
        "STREAMREC_TOPIC_RECOMMENDATIONS": f"{prefix}-rec-{suffix}",
        "STREAMREC_TOPIC_DLQ": f"{prefix}-dlq-{suffix}",
        "STREAMREC_PARTITIONS": str(partitions),
    }


def assert_no_secret(*outputs: str) -> None:
    for output in outputs:
        assert PASSWORD not in output
        assert TOKEN not in output


def test_topics_replay_and_record_work_through_sasl_ssl(
    sasl_broker: LocalKafka, tmp_path: Path
) -> None:
    topics = topic_env("sec", partitions=2)
    env = security_env(sasl_broker.connection, **topics)
    created = streamrec("topics", "create", env=env)
    assert created.returncode == 0, created.stderr
    assert f"{topics['STREAMREC_TOPIC_EVENTS']}: created (2 partitions)" in created.stdout

    source = tmp_path / "synth.msgpack"
    made = streamrec(
        "data", "synth", "--out", str(source), "--users", "40", "--items", "200",
        "--events", "500", env=env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    sent = streamrec("replay", str(source), "--max", env=env)
    assert sent.returncode == 0, sent.stderr
    assert "sent 500 · rejected 0 · failed 0 · unknown 0" in sent.stderr

    recorded = tmp_path / "recorded.msgpack"
    got = streamrec(
        "record", topics["STREAMREC_TOPIC_EVENTS"], str(recorded), "--from-beginning",
        "--to-end", env=env,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert sorted(r.raw for r in read_records(recorded)) == sorted(
        r.raw for r in read_records(source)
    )
    assert_no_secret(created.stdout + created.stderr, sent.stderr, got.stderr)


def test_a_worker_serves_recommendations_through_sasl_ssl(
    sasl_broker: LocalKafka, artifacts: tuple[Path, Path], tmp_path: Path
) -> None:
    data, art = artifacts
    connection = sasl_broker.connection
    topics = topic_env("secw", partitions=2)
    env = security_env(connection, **topics)
    assert streamrec("topics", "create", env=env).returncode == 0
    worker = Worker(
        bootstrap=connection.bootstrap,
        topics=Topics(*(topics[f"STREAMREC_TOPIC_{n}"] for n in ("EVENTS", "ITEMS",
                                                                   "RECOMMENDATIONS", "DLQ"))),
        artifacts=art,
        app_id=f"sec-{uuid.uuid4().hex[:8]}",
        data_dir=tmp_path / "store",
        partitions=2,
        extra_env={
            k: v
            for k, v in env.items()
            if k.startswith("STREAMREC_KAFKA_") and k != "STREAMREC_KAFKA_BOOTSTRAP"
        }
        | {"STREAMREC_WORKER_AUTH_TOKEN": TOKEN},
    )  # fmt: skip
    try:
        worker.start().wait_ready()
        events = first_events(data, 200)
        produce_events(connection, worker.topics.events, events)
        recs = read_topic(
            connection, worker.topics.recommendations, lambda v: len(v) >= len(events)
        )
        assert {r["event_id"] for r in recs} == {e.event_id for e in events}
        changelog = f"{worker.app_id}-user_state-changelog"
        assert {r.key.decode() for r in messages_to_end(connection, changelog)} == {
            e.user_id for e in events
        }
    finally:
        worker.stop()
    assert_no_secret(worker.log())


@pytest.mark.parametrize("command", ["topics", "replay", "record", "worker"])
def test_a_wrong_password_fails_at_once_with_one_line_and_never_shows_it(
    sasl_broker: LocalKafka, artifacts: tuple[Path, Path], tmp_path: Path, command: str
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    env = security_env(
        sasl_broker.connection,
        STREAMREC_KAFKA_SASL_PASSWORD=wrong,
        STREAMREC_WORKER_ARTIFACTS_DIR=str(artifacts[1]),
        **topic_env("secpw", partitions=2),
    )
    done = streamrec(*cli_args(command, tmp_path), env=env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(
        f"error: authentication failed at {sasl_broker.bootstrap} for user '{USER}' "
        "(SCRAM-SHA-512): check STREAMREC_KAFKA_SASL_USERNAME and STREAMREC_KAFKA_SASL_PASSWORD"
    )
    assert wrong not in done.stdout + done.stderr
    assert_no_secret(done.stdout + done.stderr)


@pytest.mark.parametrize("command", ["topics", "replay", "record", "worker"])
def test_a_stopped_broker_fails_at_once_and_says_how_to_start_one(
    artifacts: tuple[Path, Path], tmp_path: Path, free_kafka_port: int, command: str
) -> None:
    port = free_kafka_port
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    env.update(
        COLUMNS="300",
        STREAMREC_KAFKA_PORT=str(port),
        STREAMREC_WORKER_ARTIFACTS_DIR=str(artifacts[1]),
    )
    done = streamrec(*cli_args(command, tmp_path), env=env)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: no Kafka broker answers at 127.0.0.1:{port} (127.0.0.1:{port}: Connection "
        "refused): start the local one with `streamrec kafka start`, or set "
        "STREAMREC_KAFKA_BOOTSTRAP to your cluster"
    )


def cli_args(command: str, tmp_path: Path) -> list[str]:
    """A run of ``command`` that has to reach the cluster first."""
    stream = tmp_path / "one.msgpack"
    if command == "replay":
        from streamrec.streams.recorded import write_events
        from streamrec.streams.wire import Event

        write_events(stream, [Event("e1", "u1", "i1", "click", 1)])
        return ["replay", str(stream), "--max"]
    if command == "record":
        return ["record", "events", str(stream)]
    if command == "worker":
        return ["worker", "--data-dir", str(tmp_path / "store")]
    return ["topics", "create"]
