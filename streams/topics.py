"""Creating and describing Kafka topics, idempotently, with kafka-python's admin client.

The broker does not auto-create topics (a typo must fail, not create a stray topic), so
everything that needs a topic asks for it here first; asking again is harmless and says
the topic exists.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from kafka.admin import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

from streamrec.config import Settings
from streamrec.streams.connection import KafkaConnection
from streamrec.streams.reach import checked

#: Milliseconds to wait for a topic to have a leader on every partition after creation.
READY_TIMEOUT_MS = 30_000


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A topic as the cluster has it; ``created`` tells whether this call created it."""

    name: str
    partitions: int
    created: bool


@contextmanager
def admin_client(
    connection: KafkaConnection, timeout_s: float = 30.0
) -> Iterator[KafkaAdminClient]:
    """An admin client on ``connection``'s cluster that is closed after use.

    The cluster is checked first (:func:`~streamrec.streams.reach.check`): a stopped broker
    or refused credentials fail within ``connection.connect_timeout_s`` with one line
    saying why.
    """
    timeout_ms = int(timeout_s * 1000)
    admin = checked(KafkaAdminClient, connection)(
        client_id="streamrec-admin",
        bootstrap_timeout_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
    )
    try:
        yield admin
    finally:
        admin.close()


def describe_topics(admin: KafkaAdminClient, names: Sequence[str]) -> dict[str, int]:
    """Partition counts of those of ``names`` that exist."""
    out: dict[str, int] = {}
    for topic in admin.describe_topics(list(names)):
        if topic.get("error_code", 0) == 0 and topic.get("name") in names:
            out[topic["name"]] = len(topic["partitions"])
    return out


def ensure_topics(
    admin: KafkaAdminClient,
    names: Sequence[str],
    partitions: int,
    replication_factor: int = 1,
    configs: Mapping[str, str] | None = None,
) -> list[TopicInfo]:
    """Create each missing topic of ``names`` and wait until all are usable.

    An existing topic is left as it is (its partition count may differ from
    ``partitions``; the result reports the real one). Topics another client creates at the
    same moment count as existing, so concurrent callers never fail each other.
    """
    existing = describe_topics(admin, names)
    missing = [name for name in names if name not in existing]
    created: set[str] = set()
    if missing:
        spec = {
            "num_partitions": partitions,
            "replication_factor": replication_factor,
            "configs": dict(configs or {}),
        }
        response = admin.create_topics(
            {name: spec for name in missing}, timeout_ms=READY_TIMEOUT_MS, raise_errors=False
        )
        for result in response["topics"]:
            code = result["error_code"]
            if code == 0:
                created.add(result["name"])
            elif code != TopicAlreadyExistsError.errno:
                raise TopicCreationError(
                    f"cannot create topic {result['name']!r}: "
                    f"{result.get('error_message') or f'error code {code}'}"
                )
    admin.wait_for_topics(list(names), timeout_ms=READY_TIMEOUT_MS)
    counts = describe_topics(admin, names)
    return [TopicInfo(name, counts[name], name in created) for name in names]


def delete_topics(admin: KafkaAdminClient, names: Sequence[str]) -> None:
    """Delete ``names``; topics already gone are fine."""
    response = admin.delete_topics(list(names), timeout_ms=READY_TIMEOUT_MS, raise_errors=False)
    for result in response["topics"]:
        code = result["error_code"]
        if code not in (0, UnknownTopicOrPartitionError.errno):
            raise TopicCreationError(f"cannot delete topic {result['name']!r}: error code {code}")


def topic_configs(settings: Settings) -> dict[str, str]:
    """Topic-level configs of every topic streamrec creates (``min.insync.replicas``)."""
    if settings.min_insync_replicas is None:
        return {}
    return {"min.insync.replicas": str(settings.min_insync_replicas)}


def create_app_topics(settings: Settings) -> list[TopicInfo]:
    """Create streamrec's own topics (events, items, recommendations, DLQ) if missing."""
    with admin_client(settings.kafka_connection) as admin:
        return ensure_topics(
            admin,
            settings.topics,
            settings.partitions,
            settings.replication_factor,
            topic_configs(settings),
        )


def replication_warning(brokers: int, replication_factor: int) -> str | None:
    """A warning when topics get one replica on a cluster that could hold more: losing
    one broker would then lose data. None when there is nothing to warn about."""
    if replication_factor > 1 or brokers < 2:
        return None
    return (
        f"STREAMREC_REPLICATION_FACTOR is 1 on a cluster of {brokers} brokers: a topic "
        "streamrec creates is lost with the broker that holds it (set 3, and "
        "STREAMREC_MIN_INSYNC_REPLICAS=2)"
    )


def broker_count(admin: KafkaAdminClient) -> int:
    """How many brokers the cluster has (the admin's describe-cluster answer)."""
    return len(admin.describe_cluster().get("brokers") or ())


class TopicCreationError(RuntimeError):
    """The cluster refused to create or delete a topic; the message says why, in one line."""
