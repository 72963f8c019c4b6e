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

#: Milliseconds to wait for a topic to have a leader on every partition after creation.
READY_TIMEOUT_MS = 30_000


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A topic as the cluster has it; ``created`` tells whether this call created it."""

    name: str
    partitions: int
    created: bool


@contextmanager
def admin_client(bootstrap: str, timeout_s: float = 30.0) -> Iterator[KafkaAdminClient]:
    """An admin client on ``bootstrap`` that is closed after use."""
    timeout_ms = int(timeout_s * 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
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


def create_app_topics(settings: Settings) -> list[TopicInfo]:
    """Create streamrec's own topics (events, items, recommendations, DLQ) if missing."""
    with admin_client(settings.bootstrap_servers) as admin:
        return ensure_topics(
            admin, settings.topics, settings.partitions, settings.replication_factor
        )


class TopicCreationError(RuntimeError):
    """The cluster refused to create or delete a topic; the message says why, in one line."""
