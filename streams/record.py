"""Record a topic into a recorded-stream file: the message values, byte for byte.

The recorder is an observer: it assigns itself every partition of the topic and joins no
consumer group, so it commits nothing, never takes partitions away from a running worker,
and recording the same topic twice gives the same file. Per-partition order is kept (so a
user's events stay in order, the key being the user id); partitions interleave in the
order fetches return. A value that is not a valid event would break the file's framing, so
it goes to the reject file with its partition and offset instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from streamrec.config import Settings
from streamrec.streams.connection import KafkaConnection
from streamrec.streams.reach import checked
from streamrec.streams.recorded import RecordedWriter
from streamrec.streams.rejects import RejectFile
from streamrec.streams.wire import InvalidRecord, decode_event


def messages_to_end(connection: KafkaConnection, topic: str) -> Iterator[ConsumerRecord]:
    """Every message in ``topic`` from the beginning up to the end offsets as they are now.

    All partitions, no consumer group (an observer, like the recorder), per-partition
    order kept. For checks and reports that need "everything so far" without a timeout.
    """
    consumer = checked(KafkaConsumer, connection)(enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=500).values():
                yield from batch
    finally:
        consumer.close()


class TopicNotFound(LookupError):
    """The topic to record does not exist (the recorder never creates one)."""


def consumer_config(settings: Settings) -> dict[str, Any]:
    """KafkaConsumer arguments for recording: no group, no commits, raw bytes, big fetches
    (the connection's own arguments are added by :func:`make_consumer`)."""
    return {
        "group_id": None,
        "enable_auto_commit": False,
        "allow_auto_create_topics": False,
        "max_poll_records": 10_000,
        "metrics_enabled": False,
        "client_id": "streamrec-record",
    }


def make_consumer(settings: Settings) -> KafkaConsumer:
    """A consumer for recording, on the settings' cluster once it is known to answer;
    partitions are assigned by :meth:`Recorder.attach`."""
    return checked(KafkaConsumer, settings.kafka_connection)(**consumer_config(settings))


@dataclass(slots=True)
class RecordStats:
    """What one recording did; ``stopped`` says why it ended."""

    written: int = 0
    rejected: int = 0
    elapsed_s: float = 0.0
    stopped: str = ""  # "limit" | "idle" | "end" | "interrupted"

    @property
    def rate(self) -> float:
        """Recorded events per second of the whole run."""
        return self.written / self.elapsed_s if self.elapsed_s > 0 else 0.0


Progress = Callable[[RecordStats], None]


class Recorder:
    """Consumes every partition of one topic into a recorded-stream file.

    Stops at the first of: ``limit`` events written; ``idle_timeout_s`` seconds without a
    message; with ``to_end``, every partition read up to its end offset as it was when
    recording began; Ctrl-C.
    """

    def __init__(
        self,
        consumer: KafkaConsumer,
        topic: str,
        rejects: RejectFile,
        *,
        limit: int | None = None,
        idle_timeout_s: float | None = None,
        to_end: bool = False,
        max_event_bytes: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self.rejects = rejects
        self.limit = limit
        self.idle_timeout_s = idle_timeout_s
        self.to_end = to_end
        self.max_event_bytes = max_event_bytes
        self._clock = clock
        self._ends: dict[TopicPartition, int] = {}

    def attach(self, from_beginning: bool) -> list[TopicPartition]:
        """Assign all partitions and fix the start: the earliest offsets, or the current end.

        Positions are resolved here, not lazily at the first fetch, so "from now" means
        from this call: nothing produced after it is missed.
        """
        partitions = self.consumer.partitions_for_topic(self.topic)
        if not partitions:
            raise TopicNotFound(f"topic {self.topic!r} does not exist")
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        if from_beginning:
            self.consumer.seek_to_beginning(*tps)
        else:
            self.consumer.seek_to_end(*tps)
        for tp in tps:
            self.consumer.position(tp)
        if self.to_end:
            self._ends = dict(self.consumer.end_offsets(tps))
        return tps

    def _reached_end(self) -> bool:
        return all(self.consumer.position(tp) >= end for tp, end in self._ends.items())

    def run(self, writer: RecordedWriter, progress: Progress | None = None) -> RecordStats:
        """Record into ``writer`` until a stop condition holds; Ctrl-C ends it cleanly
        (stopped="interrupted"), the caller then closes the file."""
        stats = RecordStats()
        start = last_message = self._clock()
        poll_ms = 200
        try:
            while True:
                if self.to_end and self._reached_end():
                    stats.stopped = "end"
                    break
                if self.limit is not None and stats.written >= self.limit:
                    stats.stopped = "limit"
                    break
                now = self._clock()
                if self.idle_timeout_s is not None and now - last_message >= self.idle_timeout_s:
                    stats.stopped = "idle"
                    break
                want = None if self.limit is None else self.limit - stats.written
                batches = self.consumer.poll(timeout_ms=poll_ms, max_records=want)
                if batches:
                    last_message = self._clock()
                    for messages in batches.values():
                        for message in messages:
                            self._write(writer, message, stats)
                if progress is not None:
                    stats.elapsed_s = self._clock() - start
                    progress(stats)
        except KeyboardInterrupt:
            stats.stopped = "interrupted"
        stats.elapsed_s = self._clock() - start
        return stats

    def _write(self, writer: RecordedWriter, message: Any, stats: RecordStats) -> None:
        value = message.value or b""
        try:
            decode_event(value, self.max_event_bytes)
        except InvalidRecord as error:
            self.rejects.write(
                f"partition {message.partition} offset {message.offset}",
                error.reason.value,
                error.detail,
                value,
                partition=message.partition,
                offset=message.offset,
            )
            stats.rejected += 1
            return
        writer.write_raw(value)
        stats.written += 1
