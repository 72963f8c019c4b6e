"""The dead-letter topic: every record the worker cannot use, with why and where from.

A DLQ record is a msgpack map holding the reason (``streams/wire.Reason`` values, or
``key_mismatch``/``processing_failed``/``bad_item`` here), a human detail, the original
key and value bytes untouched, and the source topic/partition/offset, so an operator can
find, fix and re-produce it. The DLQ message key is the original key, so one user's bad
records stay in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgpack
from faust.types import Message, TopicT

from streamrec.streams.wire import pack

#: Reason for an event whose Kafka key is not its user_id (it would land on the wrong
#: partition and so beside the wrong user state).
KEY_MISMATCH = "key_mismatch"
#: Reason for valid events whose micro-batch failed in the engine or the tables (a bug, a
#: broken store); re-producing them is safe, as already-applied event ids are skipped.
PROCESSING_FAILED = "processing_failed"
#: Reason for a catalog change on ``items`` that is not a valid upsert or delete.
BAD_ITEM = "bad_item"


def dlq_record(message: Message, reason: str, detail: str, worker: str) -> dict[str, Any]:
    """The DLQ map for one rejected Kafka message."""
    return {
        "reason": reason,
        "detail": detail,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "key": message.key,
        "value": message.value,
        "timestamp_ms": int(message.timestamp * 1000),
        "rejected_ms": int(time.time() * 1000),
        "worker": worker,
    }


def decode_dlq_record(data: bytes) -> dict[str, Any]:
    """Read a DLQ message value back (tests, tooling)."""
    return msgpack.unpackb(data, raw=False)


class DeadLetters:
    """Sends rejected records to the DLQ topic and counts them by reason."""

    def __init__(
        self, topic: TopicT, worker: str, on_reject: Callable[[str], None] | None = None
    ) -> None:
        self.topic = topic
        self.worker = worker
        self._on_reject = on_reject

    async def reject(self, message: Message, reason: str, detail: str) -> None:
        """Send one rejected message; returns once the producer has it buffered."""
        record = dlq_record(message, reason, detail, self.worker)
        await self.topic.send(key=message.key, value=pack(record))
        if self._on_reject is not None:
            self._on_reject(reason)
