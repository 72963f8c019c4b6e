"""The dead-letter topic: every record the worker cannot use, with why and where from.

A DLQ record is a msgpack map holding the reason (``streams/wire.Reason`` values, or
``key_mismatch``/``processing_failed``/``bad_item`` here), a human detail, the original
key and value bytes, and the source topic/partition/offset, so an operator can find, fix
and re-produce it. The DLQ message key is the original key, so one user's bad records
stay in order.

Whatever arrives, a DLQ record stays small enough to be produced: a value longer than
``max_kept`` bytes is *cut* there (``value_truncated: true``), and the record always says
the whole value's ``value_size`` and ``value_sha256``, so the original can be fetched from
its topic/partition/offset (while retention keeps it) and checked. Keys over
:data:`MAX_KEY_BYTES` and details over :data:`MAX_DETAIL_CHARS` are cut the same way. A
near-limit event otherwise made a DLQ record over the producer's 1 MB limit, the send
failed, and the agent stopped for good.
"""

from __future__ import annotations

import asyncio
import hashlib
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

#: Longest key kept (bytes; also the DLQ message's key).
MAX_KEY_BYTES = 1024
#: Longest detail kept (characters).
MAX_DETAIL_CHARS = 2000
#: Marker ending a cut detail.
CUT = "…[cut]"


def dlq_record(
    message: Message, reason: str, detail: str, worker: str, max_kept: int
) -> dict[str, Any]:
    """The DLQ map for one rejected Kafka message (value cut to ``max_kept`` bytes)."""
    value = message.value or b""
    if len(detail) > MAX_DETAIL_CHARS:
        detail = detail[: MAX_DETAIL_CHARS - len(CUT)] + CUT
    return {
        "reason": reason,
        "detail": detail,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "key": _cut_key(message.key),
        "key_truncated": message.key is not None and len(message.key) > MAX_KEY_BYTES,
        "value": None if message.value is None else value[:max_kept],
        "value_truncated": len(value) > max_kept,
        "value_size": len(value),
        "value_sha256": hashlib.sha256(value).hexdigest(),
        "timestamp_ms": int(message.timestamp * 1000),
        "rejected_ms": int(time.time() * 1000),
        "worker": worker,
    }


def _cut_key(key: bytes | None) -> bytes | None:
    return None if key is None else key[:MAX_KEY_BYTES]


def decode_dlq_record(data: bytes) -> dict[str, Any]:
    """Read a DLQ message value back (tests, tooling)."""
    return msgpack.unpackb(data, raw=False)


class DeadLetterFailed(RuntimeError):
    """The broker did not take a DLQ record after every attempt."""


class DeadLetters:
    """Sends rejected records to the DLQ topic and counts them by reason."""

    def __init__(
        self,
        topic: TopicT,
        worker: str,
        on_reject: Callable[[str], None] | None = None,
        *,
        max_kept: int = 16_384,
        attempts: int = 3,
    ) -> None:
        self.topic = topic
        self.worker = worker
        self.max_kept = max_kept
        self.attempts = attempts
        self._on_reject = on_reject

    async def reject(self, message: Message, reason: str, detail: str) -> None:
        """Send one rejected message and wait until the broker has it (raises otherwise)."""
        await self.deliver([(message, reason, detail)])

    async def deliver(self, rejects: list[tuple[Message, str, str]]) -> None:
        """Send ``(message, reason, detail)`` records and wait until the broker has them all.

        Records that fail are sent again, up to ``attempts`` tries in all with a growing
        pause; raises :class:`DeadLetterFailed` when one never gets through, so the caller
        can stop without committing its offset (a rejected record is never just dropped).
        """
        pending = rejects
        error: BaseException | None = None
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(0.5 * 2 ** (attempt - 1))
            outcomes: list[tuple[tuple[Message, str, str], Any]] = []
            for entry in pending:
                record = dlq_record(*entry, self.worker, self.max_kept)
                acked: Any
                try:
                    acked = await self.topic.send(key=_cut_key(entry[0].key), value=pack(record))
                except Exception as exc:  # e.g. refused by the producer before sending
                    acked = exc
                outcomes.append((entry, acked))
            failed = []
            for entry, outcome in outcomes:
                if not isinstance(outcome, BaseException):
                    try:
                        await outcome
                    except Exception as exc:  # the broker refused it or did not answer
                        outcome = exc
                if isinstance(outcome, BaseException):
                    failed.append(entry)
                    error = outcome
                elif self._on_reject is not None:
                    self._on_reject(entry[1])
            if not failed:
                return
            pending = failed
        raise DeadLetterFailed(
            f"{len(pending)} DLQ record(s) not acknowledged after {self.attempts} attempts: "
            f"{type(error).__name__}: {error}"
        ) from error
