"""Topic creation on the real broker: ``streamrec topics create`` and ``ensure_topics``."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from streamrec.config import Settings
from streamrec.streams.connection import KafkaConnection
from streamrec.streams.topics import (
    TopicCreationError,
    admin_client,
    delete_topics,
    describe_topics,
    ensure_topics,
    topic_configs,
)

pytestmark = pytest.mark.integration


def test_topics_create_makes_the_four_topics_with_8_partitions_and_is_idempotent(
    kafka_bootstrap: str, kafka_connection: KafkaConnection
) -> None:
    suffix = uuid.uuid4().hex[:8]
    names = {
        "STREAMREC_TOPIC_EVENTS": f"events-{suffix}",
        "STREAMREC_TOPIC_ITEMS": f"items-{suffix}",
        "STREAMREC_TOPIC_RECOMMENDATIONS": f"recommendations-{suffix}",
        "STREAMREC_TOPIC_DLQ": f"events.dlq-{suffix}",
    }
    env = {**os.environ, **names, "STREAMREC_KAFKA_BOOTSTRAP": kafka_bootstrap}
    env.pop("STREAMREC_PARTITIONS", None)
    command = [sys.executable, "-c", "from streamrec.cli import main; main()", "topics", "create"]

    first = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"{name}: created (8 partitions)" for name in names.values()
    ]
    second = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == [
        f"{name}: exists (8 partitions)" for name in names.values()
    ]
    with admin_client(kafka_connection) as admin:
        assert describe_topics(admin, list(names.values())) == dict.fromkeys(names.values(), 8)
        delete_topics(admin, list(names.values()))


def test_an_existing_topic_keeps_its_partition_count(
    kafka_connection: KafkaConnection, make_topic
) -> None:
    topic = make_topic("keep", partitions=3)
    with admin_client(kafka_connection) as admin:
        (info,) = ensure_topics(admin, [topic], partitions=8)
    assert (info.name, info.partitions, info.created) == (topic, 3, False)


def test_concurrent_creators_of_the_same_topics_all_succeed(
    kafka_connection: KafkaConnection,
) -> None:
    names = [f"race-{uuid.uuid4().hex[:8]}-{i}" for i in range(3)]

    def create(_: int) -> list[bool]:
        with admin_client(kafka_connection) as admin:
            return [info.created for info in ensure_topics(admin, names, partitions=2)]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(create, range(4)))
    # Each topic was created by exactly one caller; the others found it there.
    assert [sum(created[i] for created in results) for i in range(3)] == [1, 1, 1]
    with admin_client(kafka_connection) as admin:
        assert describe_topics(admin, names) == dict.fromkeys(names, 2)
        delete_topics(admin, names)


def test_a_topic_the_broker_refuses_raises_a_clear_error(kafka_settings: Settings) -> None:
    with (
        admin_client(kafka_settings.kafka_connection) as admin,
        pytest.raises(TopicCreationError, match="cannot create topic 'no spaces allowed'"),
    ):
        ensure_topics(admin, ["no spaces allowed"], partitions=1)


def test_topics_create_without_a_running_local_broker_says_how_to_start_one(
    free_kafka_port: int,
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "STREAMREC_KAFKA_BOOTSTRAP"}
    env.update(STREAMREC_KAFKA_PORT=str(free_kafka_port), COLUMNS="300")
    done = subprocess.run(
        [sys.executable, "-c", "from streamrec.cli import main; main()", "topics", "create"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    port = free_kafka_port
    assert done.stderr.strip() == (
        f"error: no Kafka broker answers at 127.0.0.1:{port} (127.0.0.1:{port}: Connection "
        "refused): start the local one with `streamrec kafka start`, or set "
        "STREAMREC_KAFKA_BOOTSTRAP to your cluster"
    )


def test_created_topics_get_min_insync_replicas_and_existing_ones_are_left_alone(
    kafka_settings: Settings, make_topic
) -> None:
    """``min_insync_replicas`` lands in the topic's own config (not the broker default
    it equals on one broker: describe_configs lists only overrides)."""
    existing = make_topic("insync-old", partitions=1)
    new = f"insync-new-{uuid.uuid4().hex[:8]}"
    settings = kafka_settings.model_copy(
        update={"min_insync_replicas": 1, "topic_events": new, "topic_items": existing}
    )
    with admin_client(settings.kafka_connection) as admin:
        try:
            ensure_topics(admin, [new, existing], 1, 1, topic_configs(settings))
            described = admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name) for name in (new, existing)]
            )
        finally:
            delete_topics(admin, [new])
    overrides = {name: set(configs) for name, configs in described["topic"].items()}
    assert "min.insync.replicas" in overrides[new]
    assert "min.insync.replicas" not in overrides[existing]
