"""Replay a recorded stream into Kafka: paced, batched for throughput, nothing lost silently.

Every record the replay reads ends in exactly one count: ``sent`` (acknowledged by the
broker), ``rejected`` (not a valid event), ``failed`` (the broker refused it) or
``unknown`` (no answer before the final flush gave up). All but ``sent`` are written to the
reject file with their position, so a replay never drops anything without saying so. The
key is the user id, so one user's events land on one partition and keep their file order
(the idempotent producer keeps that order across retries). The value is the record's bytes
exactly as in the file, once the wire validator has accepted them: nothing is re-encoded.
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
from kafka.partitioner.default import DefaultPartitioner, murmur2
from kafka.producer.future import FutureRecordMetadata

from streamrec.config import Settings
from streamrec.streams.pacing import Pacer
from streamrec.streams.reach import checked
from streamrec.streams.recorded import Record
from streamrec.streams.rejects import RejectFile
from streamrec.streams.topics import (
    TopicInfo,
    admin_client,
    describe_topics,
    ensure_topics,
    topic_configs,
)

#: Reject reason of a valid event the broker refused.
DELIVERY_FAILED = "delivery_failed"
#: Reject reason of a valid event whose delivery was never confirmed either way.
DELIVERY_UNKNOWN = "delivery_unknown"


def producer_config(settings: Settings) -> dict[str, Any]:
    """KafkaProducer arguments from the settings: tuned for throughput, acks=all by default
    (the connection's own arguments are added by :func:`make_producer`).

    Idempotence stays on (kafka-python's default), which keeps per-partition order across
    retries with several requests in flight.
    """
    acks: int | str = "all" if settings.producer_acks == "all" else int(settings.producer_acks)
    compression = None if settings.producer_compression == "none" else settings.producer_compression
    return {
        "acks": acks,
        "enable_idempotence": acks == "all",
        "linger_ms": settings.producer_linger_ms,
        "batch_size": settings.producer_batch_size,
        "compression_type": compression,
        "partitioner": KeyHashCache(),
        "metrics_enabled": False,
        "client_id": "streamrec-replay",
    }


class KeyHashCache(DefaultPartitioner):
    """Kafka's default partitioner (murmur2 of the key, as the Java client, aiokafka and
    Faust compute it), with each key's hash remembered.

    A replay sends many events per user, and kafka-python's partitioner rehashes the key in
    pure Python and rebuilds the partition list on every send: caching takes about a tenth
    off the cost of ``send()``. Only records with a key go through the cache.
    """

    def __init__(self, max_keys: int = 1_000_000) -> None:
        self._hashes: dict[bytes, int] = {}
        self._max_keys = max_keys

    def partition(
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: bytes | None,
        cluster: Any,
    ) -> int:
        """The partition of ``serialized_key``: murmur2(key) & 0x7fffffff mod partitions."""
        partitions = cluster.partitions_for_topic(topic)
        if serialized_key is None or partitions is None:
            return super().partition(topic, key, serialized_key, value, serialized_value, cluster)
        hashed = self._hashes.get(serialized_key)
        if hashed is None:
            if len(self._hashes) >= self._max_keys:
                self._hashes.clear()
            hashed = self._hashes[serialized_key] = murmur2(serialized_key) & 0x7FFFFFFF
        return sorted(partitions)[hashed % len(partitions)]


def make_producer(settings: Settings) -> KafkaProducer:
    """A producer for replay (raw bytes in: key and value are encoded by the caller), on
    the settings' cluster once it is known to answer (one-line error else)."""
    return checked(KafkaProducer, settings.kafka_connection)(**producer_config(settings))


def close_producer(producer: KafkaProducer, timeout_s: float = 10.0) -> None:
    """Close the producer, also after a fatal producer error.

    kafka-python 3.0 can leave batches that never complete after a fatal error (seen with
    a record over the topic's max.message.bytes under idempotence); its ``close()`` then
    raises from its own flush and leaves the I/O thread running. The replay has already
    counted those events as unknown, so here the thread is forced down (private API: there
    is no public way) instead of leaking it.
    """
    try:
        producer.close(timeout=timeout_s)
    except KafkaError:
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()
            sender.join(timeout_s)
        producer._closed = True  # keeps __del__ from trying (and failing) again


class TopicMissing(LookupError):
    """The topic to replay into does not exist (and was not to be created)."""


def prepare_topic(settings: Settings, topic: str, *, create: bool = False) -> TopicInfo:
    """The topic replay will produce to, checked before the first send: kafka-python's
    producer waits ``max_block_ms`` (60 s) for the metadata of a topic the cluster does not
    have (auto-create off, as on streamrec's own broker) and then fails with a bare timeout.
    With ``create``, a missing topic is made with the settings' partitions and replication."""
    with admin_client(settings.kafka_connection) as admin:
        if create:
            (info,) = ensure_topics(
                admin,
                [topic],
                settings.partitions,
                settings.replication_factor,
                topic_configs(settings),
            )
            return info
        partitions = describe_topics(admin, [topic]).get(topic)
    if partitions is None:
        raise TopicMissing(f"topic {topic!r} does not exist on {settings.bootstrap_servers}")
    return TopicInfo(topic, partitions, created=False)


class StrictAbort(Exception):
    """``--strict`` met a bad record; everything before it was sent and flushed."""

    def __init__(self, record: Record) -> None:
        assert record.error is not None
        super().__init__(f"{record.position}: {record.error}")
        self.record = record


@dataclass(slots=True)
class ReplayStats:
    """What one replay did. ``queued`` counts events handed to the producer; each of them
    ends ``sent``, ``failed`` or ``unknown``."""

    queued: int = 0
    rejected: int = 0
    failed: int = 0
    unknown: int = 0
    elapsed_s: float = 0.0
    behind_s: float = 0.0
    interrupted: bool = False
    #: Why the replay stopped early or could not confirm deliveries (a producer error).
    error: str | None = None
    #: Byte offset of the last record settled at a check (for progress).
    last_offset: int = 0

    @property
    def sent(self) -> int:
        """Events the broker acknowledged (final once the replay has returned)."""
        return self.queued - self.failed - self.unknown

    @property
    def rate(self) -> float:
        """Acknowledged events per second of the whole run."""
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


Progress = Callable[[ReplayStats], None]


class Replayer:
    """Sends the records of one recorded stream to a topic through one producer.

    Each sent event's future is kept, with its record, until it resolves. Now and then
    (every record when paced, every ``check_every`` records at full speed, where it would
    cost) the resolved ones at the head are settled (a failure goes to the reject file), and
    with more than ``max_pending`` unresolved the replay waits for the oldest. That bounds
    memory (kafka-python's producer has no buffer limit and would queue the whole file) and
    lets the final count name every event the broker never confirmed. Progress is reported
    at most every ``progress_interval_s``.
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
        check_every: int = 1000,
        progress_interval_s: float = 0.2,
        flush_timeout_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.pacer = pacer
        self.rejects = rejects
        self.strict = strict
        self.max_pending = max_pending
        self.check_every = 1 if pacer.paced else check_every
        self.progress_interval_s = progress_interval_s
        self.flush_timeout_s = flush_timeout_s
        self._clock = clock
        self._pending: collections.deque[tuple[FutureRecordMetadata, Record]] = collections.deque()
        self.stats = ReplayStats()

    def run(self, records: Iterable[Record], progress: Progress | None = None) -> ReplayStats:
        """Replay ``records`` and return the final counts.

        Ctrl-C (KeyboardInterrupt) stops reading and flushes (``interrupted``); a producer
        error stops it too (``error``); a bad record with ``strict`` raises
        :class:`StrictAbort` after the flush. Every way out settles every sent event.
        """
        stats = self.stats
        start = self._clock()
        send = self.producer.send
        topic = self.topic
        wait = self.pacer.wait
        pending = self._pending.append
        check_every = self.check_every
        next_progress = start
        try:
            for record in records:
                event = record.event
                if event is None:
                    self._reject(record)
                else:
                    wait(event.ts)
                    pending((send(topic, record.raw, event.user_id.encode()), record))
                    stats.queued += 1
                if (record.index + 1) % check_every == 0:
                    stats.last_offset = record.offset
                    self._settle_head()
                    now = self._clock()
                    if progress is not None and now >= next_progress:
                        next_progress = now + self.progress_interval_s
                        stats.elapsed_s = now - start
                        stats.behind_s = self.pacer.behind_s
                        progress(stats)
        except KeyboardInterrupt:
            stats.interrupted = True
        except KafkaError as exc:  # the producer refuses to take more (e.g. a fatal error)
            stats.error = f"producer error after {stats.queued:,} events: {exc}"
        finally:
            self._finish(start)
        return stats

    def _reject(self, record: Record) -> None:
        assert record.error is not None
        if self.strict:
            raise StrictAbort(record)
        self._write_reject(record, record.error.reason.value, record.error.detail)
        self.stats.rejected += 1

    def _write_reject(self, record: Record, reason: str, detail: str) -> None:
        self.rejects.write(
            record.position, reason, detail, record.raw, index=record.index, offset=record.offset
        )

    def _settle(self, future: FutureRecordMetadata, record: Record) -> None:
        """Count one resolved future; a failure goes to the reject file."""
        if future.exception is not None:
            exc = future.exception
            self._write_reject(record, DELIVERY_FAILED, f"{type(exc).__name__}: {exc}")
            self.stats.failed += 1

    def _settle_head(self) -> None:
        """Settle the resolved futures at the head; wait while too many are unresolved."""
        pending = self._pending
        while pending:
            future, record = pending[0]
            if not future.is_done:
                if len(pending) <= self.max_pending:
                    return
                # A failure is settled below; a timeout only ends this wait.
                with contextlib.suppress(KafkaError):
                    future.get(timeout=self.flush_timeout_s)
                if not future.is_done:
                    return
            pending.popleft()
            self._settle(future, record)

    def _finish(self, start: float) -> None:
        """Flush what is queued (after Ctrl-C or a strict abort too) and settle every event:
        one that is still unresolved is counted ``unknown`` and written to the reject file."""
        try:
            self.producer.flush(timeout=self.flush_timeout_s)
        except KafkaError as exc:
            self.stats.error = self.stats.error or f"final flush failed: {exc}"
        detail = self.stats.error or "no answer from the broker"
        while self._pending:
            future, record = self._pending.popleft()
            if future.is_done:
                self._settle(future, record)
            else:
                self._write_reject(record, DELIVERY_UNKNOWN, detail)
                self.stats.unknown += 1
        self.stats.elapsed_s = self._clock() - start
        self.stats.behind_s = self.pacer.behind_s
