"""Shared fixtures: one real Kafka broker per test session.

``kafka_bootstrap`` starts streamrec's own local broker through the very manager
``streamrec kafka start`` uses, on a free port of its own (so it neither collides with a
developer's broker on 9092 nor with another test session running at the same time), and
stops it and removes its data when the session ends. With ``STREAMREC_KAFKA_BOOTSTRAP``
set, that cluster is used instead and nothing is started or stopped.
"""

from __future__ import annotations

import random
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streamrec.config import Settings
from streamrec.localkafka import LocalKafka
from streamrec.streams.connection import KafkaConnection


def pytest_configure(config: pytest.Config) -> None:
    """Silence kafka-python 3.0's import-time use of deprecated importlib.resources calls
    (one warning per protocol schema: hundreds per run, none of them ours)."""
    config.addinivalue_line(
        "filterwarnings", "ignore:(open|read)_text is deprecated:DeprecationWarning"
    )


def free_port_pair() -> int:
    """A port p on 127.0.0.1 with p and p+1 free (broker and KRaft controller).

    Drawn below the kernel's ephemeral range: a port the kernel handed out (``bind(0)``) may
    be handed to a client connection again before the broker binds it, and on a busy
    machine one was (the controller failed with "Address already in use")."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(100):
        port = random.randrange(max(1024, low - 12_000), low - 1)
        if all(_bindable(p) for p in (port, port + 1)):
            return port
    raise RuntimeError("no two adjacent free ports on 127.0.0.1")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def free_kafka_port() -> int:
    """A port for one more local broker (its controller takes the port after it)."""
    return free_port_pair()


@pytest.fixture(scope="session")
def port_pairs() -> Callable[[], int]:
    """:func:`free_port_pair` itself, for fixtures wider than one test (a module's broker)."""
    return free_port_pair


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a running Kafka cluster for this test session."""
    settings = Settings()
    if settings.kafka_bootstrap:
        yield settings.kafka_bootstrap
        return
    broker = LocalKafka(settings.model_copy(update={"kafka_port": free_port_pair()}))
    with broker.throwaway() as status:
        yield status.bootstrap


@pytest.fixture
def kafka_connection(kafka_bootstrap: str) -> KafkaConnection:
    """How a client reaches the session's cluster (PLAINTEXT, as the local broker is)."""
    return Settings().model_copy(update={"kafka_bootstrap": kafka_bootstrap}).kafka_connection


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> Settings:
    """Settings that point every Kafka client at the session's cluster."""
    return Settings().model_copy(update={"kafka_bootstrap": kafka_bootstrap})


@pytest.fixture
def make_topic(kafka_connection: KafkaConnection) -> Iterator[Callable[..., str]]:
    """``make_topic(name_prefix, partitions=8) -> name``: a fresh, uniquely named topic,
    ready to use (a leader on every partition), deleted after the test."""
    from streamrec.streams.topics import admin_client, delete_topics, ensure_topics

    made: list[str] = []
    with admin_client(kafka_connection) as admin:

        def make(name_prefix: str, partitions: int = 8) -> str:
            name = f"{name_prefix}-{uuid.uuid4().hex[:10]}"
            ensure_topics(admin, [name], partitions)
            made.append(name)
            return name

        yield make
        if made:
            delete_topics(admin, made)
