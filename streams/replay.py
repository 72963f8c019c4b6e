"""Replay a recorded stream into Kafka: paced, batched for throughput, nothing lost silently.

Every record of the file ends in exactly one of three counts: ``sent`` (acknowledged by
the broker), ``rejected`` (not a valid event: written to the reject file with its
position) or ``failed`` (valid, but the broker never acknowledged it: also written to the
reject file, with reason ``delivery_failed``). The key is the user id, so one user's events
land on one partition and keep their file order (the idempotent producer keeps that order
across retries).
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata
from streamrec.streams.pacing import Pacer
from streamrec.streams.recorded import Record
from streamrec.streams.rejects import RejectFile

from streamrec.config import Settings

#: Reason written to the reject file for a valid event the broker did not acknowledge.
DELIVERY_FAILED = "delivery_failed"


def producer_config(settings: Settings) -> dict[str, Any]:
    """KafkaProducer arguments from the settings: tuned for throughput, acks=all by default.

    Idempotence stays on (kafka-python's default), which keeps per-partition order across
    retries with several requests in flight.
    """
    acks: int | str = "all" if settings.producer_acks == "all" else int(settings.producer_acks)
    compression = None if settings.producer_compression == "none" else settings.producer_compression
    return {
        "bootstrap_servers": settings.bootstrap_servers,
        "acks": acks,
        "enable_idempotence": acks == "all",
        "linger_ms": settings.producer_linger_ms,
        "batch_size": settings.producer_batch_size,
        "compression_type": compression,
        "metrics_enabled": False,
        "client_id": "streamrec-replay",
    }


def make_producer(settings: Settings) -> KafkaProducer:
    """A producer for replay (raw bytes in: key and value are encoded by the caller)."""
    return KafkaProducer(**producer_config(settings))


class StrictAbort(Exception):
    """``--strict`` met a bad record; everything before it was sent and flushed."""

    def __init__(self, record: Record) -> None:
        assert record.error is not None
        super().__init__(f"{record.position}: {record.error}")
        self.record = record


@dataclass(slots=True)
class ReplayStats:
    """What one replay did; ``queued`` counts events handed to the producer."""

    queued: int = 0
    rejected: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    behind_s: float = 0.0
    interrupted: bool = False
    unconfirmed: bool = False  # the final flush timed out: some deliveries are unknown
    last_offset: int = 0  # byte offset of the last checkpointed record (for progress)

    @property
    def sent(self) -> int:
        """Events the broker acknowledged (after the final flush)."""
        return self.queued - self.failed

    @property
    def rate(self) -> float:
        """Acknowledged events per second of the whole run."""
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


Progress = Callable[[ReplayStats], None]


class Replayer:
    """Sends the records of one recorded stream to a topic through one producer.

    Delivery failures are reported by the producer's I/O thread into a queue and written to
    the reject file by the replaying thread, so the file has one writer. Every ``every``
    records the replay checkpoints the last future; with more than ``max_pending`` events
    not yet checked it waits for the oldest checkpoint, which bounds memory (kafka-python's
    producer has no buffer limit and would otherwise queue the whole file).
    """

    def __init__(
        self,
        producer: KafkaProducer,
        topic: str,
        pacer: Pacer,
        rejects: RejectFile,
        *,
        strict: bool = False,
        max_pending: int = 200_000,
        every: int = 5000,
        flush_timeout_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.pacer = pacer
        self.rejects = rejects
        self.strict = strict
        self.every = every
        self.flush_timeout_s = flush_timeout_s
        self._clock = clock
        self._max_checkpoints = max(1, max_pending // every)
        self._checkpoints: collections.deque[FutureRecordMetadata] = collections.deque()
        self._failures: collections.deque[tuple[Record, Exception]] = collections.deque()
        self.stats = ReplayStats()

    def run(self, records: Iterable[Record], progress: Progress | None = None) -> ReplayStats:
        """Replay ``records``; Ctrl-C (KeyboardInterrupt) stops reading, flushes and returns
        the stats with ``interrupted`` set. ``progress`` is called every ``every`` records."""
        stats = self.stats
        start = self._clock()
        send = self.producer.send
        topic = self.topic
        wait = self.pacer.wait
        on_error = self._on_error
        every = self.every
        future: FutureRecordMetadata | None = None
        try:
            for record in records:
                event = record.event
                if event is None:
                    self._reject(record)
                else:
                    wait(event.ts)
                    future = send(topic, record.raw, event.user_id.encode())
                    future.add_errback(on_error, record)
                    stats.queued += 1
                if (record.index + 1) % every == 0:
                    stats.last_offset = record.offset
                    self._checkpoint(future)
                    if progress is not None:
                        stats.elapsed_s = self._clock() - start
                        stats.behind_s = self.pacer.behind_s
                        progress(stats)
        except KeyboardInterrupt:
            stats.interrupted = True
        finally:
            self._finish(start)
        return stats

    def _checkpoint(self, future: FutureRecordMetadata | None) -> None:
        """Report failures so far and keep at most ``max_pending`` events unacknowledged."""
        if future is not None and (not self._checkpoints or self._checkpoints[-1] is not future):
            self._checkpoints.append(future)
        while len(self._checkpoints) > self._max_checkpoints:
            # A failed event is counted by its errback; a timeout only ends the wait.
            with contextlib.suppress(KafkaError):
                self._checkpoints.popleft().get(timeout=self.flush_timeout_s)
        self._drain_failures()

    def _write_reject(self, record: Record, reason: str, detail: str) -> None:
        self.rejects.write(
            record.position, reason, detail, record.raw, index=record.index, offset=record.offset
        )

    def _reject(self, record: Record) -> None:
        assert record.error is not None
        if self.strict:
            raise StrictAbort(record)
        self._write_reject(record, record.error.reason.value, record.error.detail)
        self.stats.rejected += 1

    def _on_error(self, record: Record, exc: Exception) -> None:
        # Runs on the producer's I/O thread: only hand over (deque.append is thread-safe).
        self._failures.append((record, exc))

    def _drain_failures(self) -> None:
        while self._failures:
            record, exc = self._failures.popleft()
            self._write_reject(record, DELIVERY_FAILED, f"{type(exc).__name__}: {exc}")
            self.stats.failed += 1

    def _finish(self, start: float) -> None:
        """Flush what is queued (also after Ctrl-C or a strict abort) and count the outcome."""
        try:
            self.producer.flush(timeout=self.flush_timeout_s)
        except KafkaError:
            self.stats.unconfirmed = True
        self._checkpoints.clear()
        self._drain_failures()
        self.stats.elapsed_s = self._clock() - start
        self.stats.behind_s = self.pacer.behind_s
