"""Replay's producer set-up: where keys land and what the settings turn into.

Kafka behaviour (delivery, order, rejects) is tested on the real broker in
tests/integration/test_replay_record.py.
"""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner as AioDefaultPartitioner
from kafka.partitioner.default import DefaultPartitioner

from streamrec.config import Settings
from streamrec.streams.replay import KeyHashCache, producer_config


class Metadata:
    """The three questions a kafka-python partitioner asks of cluster metadata."""

    def __init__(self, partitions: int) -> None:
        self._partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {"events"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions


def test_cached_partitioner_puts_every_key_where_kafka_and_faust_do() -> None:
    cache = KeyHashCache(max_keys=100)  # small, so the cache also gets cleared on the way
    default = DefaultPartitioner()
    for partitions in (1, 3, 8, 12):
        cluster = Metadata(partitions)
        for i in range(500):
            key = f"user-{i % 250}-é".encode()  # repeats: half of the lookups are cached
            expected = default.partition("events", None, key, None, None, cluster)
            assert cache.partition("events", None, key, None, None, cluster) == expected
            assert AioDefaultPartitioner()(key, list(range(partitions)), []) == expected


def test_producer_settings_acks_all_is_idempotent_and_none_means_no_compression() -> None:
    config = producer_config(Settings(kafka_bootstrap="broker:9092"))
    assert (config["acks"], config["enable_idempotence"], config["compression_type"]) == (
        "all",
        True,
        None,
    )
    fast = producer_config(
        Settings(producer_acks="1", producer_compression="lz4", producer_linger_ms=20)
    )
    assert (fast["acks"], fast["enable_idempotence"], fast["compression_type"]) == (1, False, "lz4")
    assert fast["linger_ms"] == 20
