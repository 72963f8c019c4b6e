"""The live catalog: every worker applies every change on topic ``items`` to its own index.

A catalog change is a msgpack map keyed by the item id: ``{"op": "upsert", "item_id",
"vector": [float…]}`` or ``{"op": "delete", "item_id"}`` (a null value — a compaction
tombstone — is a delete too). Keyed by item id, the topic can be log-compacted and still
hold the full history of changes that matter.

Why not a Faust agent: an agent's partitions are shared out across the consumer group, so
each worker would see only some of the changes. Every index replica needs all of them, so
each worker reads every partition of ``items`` itself with a group-less consumer (no
commits), from the beginning: a (re)started worker loads the index of the artifacts, then
replays every change since, and reports ready only once it has caught up with the
high-water marks it saw at start. Changes are applied on the engine's compute thread, so
they never race a search.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import msgpack
import numpy as np
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition
from faust.types import Message
from mode import Service

from streamrec.streams.core.engine import Engine
from streamrec.streams.dlq import BAD_ITEM
from streamrec.streams.runtime import Runtime
from streamrec.streams.wire import pack

UPSERT = "upsert"
DELETE = "delete"


@dataclass(frozen=True, slots=True)
class CatalogChange:
    """One upsert (with its vector) or delete of one item."""

    op: str
    item_id: str
    vector: tuple[float, ...] | None = None


def encode_upsert(item_id: str, vector: Sequence[float]) -> bytes:
    """The ``items`` message value adding or replacing an item."""
    return pack({"op": UPSERT, "item_id": item_id, "vector": [float(x) for x in vector]})


def encode_delete(item_id: str) -> bytes:
    """The ``items`` message value removing an item."""
    return pack({"op": DELETE, "item_id": item_id})


def decode_change(key: bytes | None, value: bytes | None, dim: int) -> CatalogChange:
    """Validate one ``items`` message, or raise ``ValueError`` saying what is wrong."""
    if value is None:
        if not key:
            raise ValueError("tombstone without a key")
        return CatalogChange(DELETE, key.decode("utf-8", "replace"))
    try:
        obj = msgpack.unpackb(value, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ValueError(f"not msgpack: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError("not a map")
    item_id, op = obj.get("item_id"), obj.get("op")
    if not isinstance(item_id, str) or not item_id:
        raise ValueError("missing or empty 'item_id'")
    if op == DELETE:
        return CatalogChange(DELETE, item_id)
    if op != UPSERT:
        raise ValueError(f"unknown op {op!r} (known: {UPSERT}, {DELETE})")
    vector = obj.get("vector")
    if not isinstance(vector, list) or len(vector) != dim:
        raise ValueError(f"'vector' must be a list of {dim} numbers")
    if not all(isinstance(x, int | float) and math.isfinite(x) for x in vector):
        raise ValueError("'vector' holds a non-finite or non-number value")
    return CatalogChange(UPSERT, item_id, tuple(float(x) for x in vector))


def latest_changes(changes: Sequence[CatalogChange]) -> tuple[list[CatalogChange], list[str]]:
    """Collapse a run of changes to the last one per item: (upserts, deleted ids)."""
    last = {change.item_id: change for change in changes}
    upserts = [c for c in last.values() if c.op == UPSERT]
    deletes = [c.item_id for c in last.values() if c.op == DELETE]
    return upserts, deletes


class CatalogFollower(Service):
    """Reads all of ``items`` without a consumer group and applies it to the engine."""

    def __init__(self, rt: Runtime, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.rt = rt
        self._consumer: AIOKafkaConsumer | None = None
        self._targets: dict[TopicPartition, int] = {}

    async def on_start(self) -> None:
        topic = self.rt.settings.topic_items
        self._consumer = AIOKafkaConsumer(
            topic,
            **self.rt.settings.kafka_connection.client_options(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=f"{self.rt.worker_name}-catalog",
        )
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        ends = await self._consumer.end_offsets(tps) if tps else {}
        self._targets = {tp: end for tp, end in ends.items() if end > 0}
        self.rt.items_caught_up = not self._targets

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    @Service.task
    async def _follow(self) -> None:
        engine = await self.rt.engine()
        consumer = self._consumer
        assert consumer is not None
        while not self.should_stop:
            fetched = await consumer.getmany(timeout_ms=200, max_records=1000)
            records = [r for batch in fetched.values() for r in batch]
            if records:
                await self._apply(engine, records)
            if not self.rt.items_caught_up:
                positions = {tp: await consumer.position(tp) for tp in self._targets}
                self.rt.items_caught_up = all(
                    positions[tp] >= end for tp, end in self._targets.items()
                )

    async def _apply(self, engine: Engine, records: list[ConsumerRecord]) -> None:
        dim = engine.index.dim
        changes = []
        for record in records:
            try:
                changes.append(decode_change(record.key, record.value, dim))
            except ValueError as err:
                await self.rt.dead_letters.reject(_as_message(record), BAD_ITEM, str(err))
        upserts, deletes = latest_changes(changes)
        if upserts:
            ids = [c.item_id for c in upserts]
            vectors = np.asarray([c.vector for c in upserts], dtype=np.float32)
            await self.rt.run(engine.apply_item_upsert, ids, vectors)
            self.rt.metrics.catalog_changes.labels(UPSERT).inc(len(ids))
        if deletes:
            await self.rt.run(engine.apply_item_delete, deletes)
            self.rt.metrics.catalog_changes.labels(DELETE).inc(len(deletes))
        self.rt.metrics.catalog_size.set(len(engine.index))


def _as_message(record: ConsumerRecord) -> Message:
    """The faust ``Message`` of a record read by the follower (for the DLQ)."""
    return Message(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp=record.timestamp / 1000,
        timestamp_type=record.timestamp_type,
        headers=record.headers,
        key=record.key,
        value=record.value,
        checksum=None,
    )


def register(rt: Runtime) -> None:
    """Start a catalog follower with the worker (after table recovery) and stop it with it."""

    @rt.app.task
    async def follow_catalog() -> None:
        await rt.app.add_runtime_dependency(CatalogFollower(rt, loop=rt.app.loop))
