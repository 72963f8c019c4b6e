"""Emit: a micro-batch's records produced as Kafka record batches, not one send per record.

Faust sends every record on its own: a table write or ``send_soon`` queues one message in
its producer buffer, whose task hands them to the Kafka client one by one, each through
the topic's serializers, sensors, callbacks and a future. At hundreds of records per
micro-batch (a state changelog and a latest-list changelog record per user, a
recommendation per event) that was the event loop's largest single cost. Here a batch's
records for one topic are grouped by partition and appended to the client's record
batches (:meth:`AIOKafkaProducer.create_batch`, ``send_batch``): one future per partition
batch, acknowledged as a whole.

Tables whose changelog goes this way are :class:`QueuedChangelogTable`: a write stores the
value and queues its changelog record; :meth:`BatchedSender.flush_changelog` sends what the
table queued and, once the broker has it, records the persisted offsets, as Faust's own
changelog callback does (a restarted worker reads the changelog from there).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import faust
from aiokafka import AIOKafkaProducer
from faust.types import TP
from faust.types.serializers import RegistryT


class QueuedChangelogTable(faust.Table):
    """A table whose writes queue their changelog records for a :class:`BatchedSender`
    (instead of Faust's one send per write). Writes must be flushed: until then they are in
    this worker's store only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: (key, value, partition) of every write not yet handed to the sender.
        self.unsent: list[tuple[Any, Any, int]] = []

    def on_key_set(self, key: Any, value: Any) -> None:
        partition = self.partition_for_key(key)  # the current event's partition
        assert partition is not None  # a table written outside an event's context raised
        self.unsent.append((key, value, partition))
        self._maybe_set_key_ttl(key, partition)
        self._sensor_on_set(self, key, value)


class BatchedSender:
    """Sends records through the app's Kafka producer as record batches (module doc)."""

    def __init__(self, client: Callable[[], AIOKafkaProducer], serializers: RegistryT) -> None:
        """``client``: the started Kafka producer, asked for at each send (the app's starts
        after this is made); ``serializers``: what turns table keys and values to bytes."""
        self._client = client
        self.serializers = serializers

    @classmethod
    def of_app(cls, app: faust.App) -> BatchedSender:
        """Sends through ``app``'s own producer (its connection, security and settings)."""
        return cls(app.producer._ensure_producer, app.serializers)  # type: ignore[attr-defined]

    async def send(
        self, topic: str, records: Iterable[tuple[bytes | None, bytes | None, int | None]]
    ) -> dict[int, int]:
        """Send ``(key, value, partition)`` records (partition None: the producer's
        partitioner, by key, as a plain send would pick it); returns once the broker has
        acknowledged all of them, with the last offset written per partition. Order is
        kept within a partition."""
        client = self._client()
        by_partition: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
        unplaced = []
        for key, value, partition in records:
            if partition is None:
                unplaced.append((key, value))
            else:
                by_partition.setdefault(partition, []).append((key, value))
        if unplaced:
            partitions = sorted(await client.partitions_for(topic))
            choose = client._partitioner
            for key, value in unplaced:
                by_partition.setdefault(choose(key, partitions, partitions), []).append(
                    (key, value)
                )
        sent = {
            partition: await self._send_partition(client, topic, partition, rows)
            for partition, rows in by_partition.items()
        }
        last: dict[int, int] = {}
        for partition, futures in sent.items():
            for count, future in futures:
                metadata = await future
                last[partition] = metadata.offset + count - 1
        return last

    @staticmethod
    async def _send_partition(
        client: AIOKafkaProducer,
        topic: str,
        partition: int,
        rows: Sequence[tuple[bytes | None, bytes | None]],
    ) -> list[tuple[int, asyncio.Future[Any]]]:
        """Append ``rows`` to record batches for one partition, each sent when full; the
        futures with each batch's record count."""
        futures = []
        batch, count = client.create_batch(), 0
        for key, value in rows:
            # An empty batch takes any record (a larger one goes alone, as a plain send
            # would, and the broker judges its size), so the retry cannot fail.
            if batch.append(key=key, value=value, timestamp=None) is None:  # full
                futures.append((count, await client.send_batch(batch, topic, partition=partition)))
                batch, count = client.create_batch(), 0
                batch.append(key=key, value=value, timestamp=None)
            count += 1
        if count:
            futures.append((count, await client.send_batch(batch, topic, partition=partition)))
        return futures

    async def flush_changelog(self, table: faust.Table) -> None:
        """Send the changelog records ``table`` queued (a :class:`QueuedChangelogTable`;
        other tables send their own) and record the persisted offsets once acknowledged."""
        unsent = getattr(table, "unsent", None)
        if not unsent:
            return
        table.unsent = []  # type: ignore[attr-defined]
        topic = cast(faust.Topic, table.changelog_topic)  # a table's is always a Topic
        dumps = self.serializers
        records = [
            (
                dumps.dumps_key(topic.key_type, key, serializer=topic.key_serializer),
                dumps.dumps_value(topic.value_type, value, serializer=topic.value_serializer),
                partition,
            )
            for key, value, partition in unsent
        ]
        last = await self.send(topic.get_topic_name(), records)
        for partition, offset in last.items():
            table.data.set_persisted_offset(TP(topic.get_topic_name(), partition), offset)
