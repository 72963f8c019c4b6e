"""streams/emit.py against the real broker: record batches land where plain sends would,
in order, with the offsets the sender reports."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import faust
from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer
from kafka.partitioner.default import murmur2

from streamrec.streams.connection import KafkaConnection
from streamrec.streams.emit import BatchedSender

PARTITIONS = 4


def _partition_of(key: bytes) -> int:
    """Where kafka-python (and Java's default partitioner: murmur2) puts ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % PARTITIONS


def _read_all(connection: KafkaConnection, topic: str, count: int) -> list:
    consumer = KafkaConsumer(
        topic,
        **connection.client_options(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=10_000,
    )
    try:
        got = []
        for message in consumer:
            got.append(message)
            if len(got) == count:
                break
        return got
    finally:
        consumer.close()


async def _send(connection: KafkaConnection, topic: str, records: list) -> dict[int, int]:
    producer = AIOKafkaProducer(**connection.client_options(), acks="all")
    await producer.start()
    try:
        sender = BatchedSender(lambda: producer, faust.App("emit-test").serializers)
        return await sender.send(topic, records)
    finally:
        await producer.stop()


def test_keyed_records_land_on_the_default_partitioners_partition_in_order_with_their_offsets(
    kafka_connection: KafkaConnection, make_topic
) -> None:
    topic = make_topic("emit-keyed", partitions=PARTITIONS)
    # 3,000 records of ~100 bytes: many record batches per partition at the 16 KiB default.
    records = [(f"user-{i % 37}".encode(), f"{i:06d}".encode() * 16, None) for i in range(3000)]

    last = asyncio.run(_send(kafka_connection, topic, records))

    got = _read_all(kafka_connection, topic, len(records))
    assert len(got) == len(records)
    by_partition: dict[int, list] = defaultdict(list)
    for message in got:
        assert message.partition == _partition_of(message.key)
        by_partition[message.partition].append(message)
    for partition, messages in by_partition.items():
        sent_there = [value for key, value, _ in records if _partition_of(key) == partition]
        assert [m.value for m in sorted(messages, key=lambda m: m.offset)] == sent_there
        assert last[partition] == max(m.offset for m in messages)
    assert set(last) == set(by_partition)


def test_a_record_larger_than_a_record_batch_is_sent_alone_between_the_others(
    kafka_connection: KafkaConnection, make_topic
) -> None:
    topic = make_topic("emit-large", partitions=1)
    large = b"x" * 100_000  # six times the producer's 16 KiB batch size
    records = [(b"a", b"before", 0), (b"b", large, 0), (b"c", b"after", 0)]

    last = asyncio.run(_send(kafka_connection, topic, records))

    got = _read_all(kafka_connection, topic, 3)
    assert [m.value for m in got] == [b"before", large, b"after"]
    assert last == {0: got[-1].offset}
