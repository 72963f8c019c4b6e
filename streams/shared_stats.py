"""Global statistics: every worker's popularity and co-visitation count every worker's events.

Each worker owns some partitions of ``events``, so on its own it would count 1/N of the
traffic. After each micro-batch it publishes the delta its engine committed
(:attr:`Engine.last_delta`, see :mod:`.core.statistics`) to the app's deltas topic
``{app id}-stats-deltas``; every worker reads all of that topic without a consumer group
(like ``items``, streams/items.py) and commits the *other* workers' deltas through the same
:meth:`SharedStats.commit`, on the compute thread, between batches. Its own deltas it skips
by their origin (a random id per process start: a restarted worker applies what its
previous life published, since that life's counts died with it).

**Order and crash safety.** The delta is acknowledged by the broker before the batch's user
states are written (personalize.py), so a state that is stored always has its delta on the
broker: a crash can make a batch be applied again (its states not stored), never lost.
Applied again, its events carry the keys of the first time, and :class:`SharedStats`
(``dedupe``) drops keys it has already committed, whichever copy comes first.

**Propagation delay.** A delta reaches the other workers' statistics at most about
``apply_ms`` after the broker has it (the follower applies what arrived at most once per
``apply_ms``, in one compute-thread call), plus one fetch round trip and the wait for the
compute thread to finish the batch it is on. The figure measured on this machine is in
the README; metric ``streamrec_stats_delta_delay_seconds`` is what a running worker sees.

**Durability.** Every ``checkpoint_s`` a caught-up worker writes a checkpoint to the app's
compacted topic ``{app id}-stats-checkpoints``: the snapshot of its statistics
(:meth:`SharedStats.snapshot`, zstd), the deltas-topic offsets it covers, and its own origin
and sequence number (its own deltas up to there are in it). A (re)started worker restores
the newest complete checkpoint of any worker (all of them hold the same global counts) and
replays only the deltas topic's tail after its offsets; with none it starts from the
training seed and replays the whole topic. A topic, not the worker's data dir: a worker
killed on one machine and started on another (a rescheduled pod without a volume) finds it
there. Checkpoints are cut into chunks under the producer's message limit; each writer
alternates between two slots of chunk keys and writes its manifest last, so a kill during a
write leaves its previous checkpoint whole.

A checkpoint holds no event of this worker whose delta is not on the broker. The engine
commits a batch locally before its delta is acknowledged (with the pipeline, batch n+1 is
computed while batch n publishes), and a checkpoint holding batch n's events and keys
would, if that publish then failed, make the restarted worker drop the redelivered batch
as already counted: the other workers would never count it. So the snapshot also counts
this worker's own events in it (the events less those of other workers' deltas and of the
restored checkpoint), and the checkpoint is written only once :meth:`GlobalStats.publish`
has had that many acknowledged (:class:`AckedEvents`; deltas are acknowledged in batch
order). After ``ack_wait_s`` it is skipped with a warning: the previous one still stands.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, TopicPartition
from kafka.admin import KafkaAdminClient
from mode import Service
from prometheus_client import Counter, Gauge, Histogram

from streamrec.streams.core.statistics import SharedStats, StatsDelta
from streamrec.streams.stats_wire import (
    Checkpoint,
    DeltaMessage,
    checkpoint_records,
    decode_delta,
    encode_delta,
    latest_values,
    newest,
    pieces,
    read_checkpoints,
)
from streamrec.streams.topics import ensure_topics

if TYPE_CHECKING:
    from streamrec.streams.core.engine import Engine
    from streamrec.streams.runtime import Runtime
    from streamrec.streams.variants import VariantEngines

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StatsConfig:
    """What the global statistics need of the settings (``worker_stats_*``)."""

    deltas_topic: str
    checkpoints_topic: str
    enabled: bool = True
    apply_ms: float = 200.0
    checkpoint_s: float = 60.0
    dedupe_events: int = 200_000
    retention_ms: int = 7 * 86_400_000
    replication_factor: int = 1
    topic_configs: Mapping[str, str] = field(default_factory=dict)


# --- topics -----------------------------------------------------------------------------
def create_topics(admin: KafkaAdminClient, config: StatsConfig) -> None:
    """The deltas topic (one partition: one total order, every worker reads all of it; one
    partition carries far more than the deltas of many workers) and the compacted
    checkpoints topic. Both kept ``retention_ms``: a checkpoint is rewritten every
    ``checkpoint_s``, and a restart needs the deltas after the newest one."""
    if not config.enabled:
        return
    retention = {**config.topic_configs, "retention.ms": str(config.retention_ms)}
    ensure_topics(admin, [config.deltas_topic], 1, config.replication_factor, retention)
    ensure_topics(
        admin,
        [config.checkpoints_topic],
        1,
        config.replication_factor,
        {**retention, "cleanup.policy": "compact,delete"},
    )


# --- the worker's side ------------------------------------------------------------------
class AckedEvents:
    """How many of this worker's own events the broker has acknowledged (their deltas), and
    a bounded wait for a count; on the event loop."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Event()

    def add(self, events: int) -> None:
        """``events`` more are acknowledged; wakes every waiter to look again."""
        self.count += events
        self._changed.set()
        self._changed = asyncio.Event()

    async def reach(self, events: int, timeout: float) -> bool:
        """Whether at least ``events`` are acknowledged within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while self.count < events:
                    await self._changed.wait()
        except TimeoutError:
            return False
        return True


class GlobalStats(Service):
    """Publishes this worker's deltas, applies the others', writes and restores checkpoints."""

    #: How long a checkpoint waits for the deltas it holds to be acknowledged (normally one
    #: publish round trip). The follower applies no delta meanwhile, and a skipped
    #: checkpoint costs only its turn, so this is short.
    ack_wait_s = 5.0

    def __init__(self, rt: Runtime, config: StatsConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rt = rt
        self.config = config
        #: This process's id on the deltas topic.
        self.origin = uuid.uuid4().hex
        self.seq = 0
        self.shared: SharedStats | None = None
        self.caught_up = asyncio.Event()
        self._attached = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        # Touched on the compute thread only (consistent with the statistics they describe):
        self._offsets: dict[int, int] = {}
        self._skip = ("", 0)  # a restored checkpoint's writer's deltas up to seq are in it
        self._slot = 0
        #: Events of other workers' deltas and of the restored checkpoint; the rest of
        #: ``shared.events`` are this worker's own, to be acknowledged before a checkpoint.
        self._foreign = 0
        self.acked = AckedEvents()
        registry = rt.metrics.registry
        self.delay = Histogram(
            "streamrec_stats_delta_delay_seconds",
            "From another worker's stats delta reaching the broker to its commit here.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.remote_events = Counter(
            "streamrec_stats_remote_events",
            "Events of other workers' stats deltas committed here (after deduplication).",
            registry=registry,
        )
        self.events = Gauge(
            "streamrec_stats_events",
            "Events the global statistics count (every worker's, each once; seed not counted).",
            registry=registry,
        )
        self.checkpoints = Counter(
            "streamrec_stats_checkpoints", "Stats checkpoints written.", registry=registry
        )
        self.checkpoint_bytes = Gauge(
            "streamrec_stats_checkpoint_bytes",
            "Compressed size of the last stats checkpoint written or restored.",
            registry=registry,
        )
        if not config.enabled:
            self.caught_up.set()

    @property
    def writer(self) -> str:
        return self.rt.worker_name

    # --- the agent's two calls -------------------------------------------------------
    async def attach(self, engines: VariantEngines) -> None:
        """Give the engines one deduplicating commit point, then wait until the statistics
        hold what the deltas topic had at start (restored checkpoint + replayed tail)."""
        if not self.config.enabled:
            return
        first = next(iter(engines.engines.values()))
        self.shared = SharedStats(first.stats.statistics, dedupe=self.config.dedupe_events)
        for engine in engines.engines.values():
            engine.stats = self.shared
        self._attached.set()
        await self.caught_up.wait()

    async def publish(self, deltas: Sequence[StatsDelta]) -> None:
        """Send the batch's committed deltas; returns once the broker has all of them."""
        if not self.config.enabled or self._producer is None:
            return
        sent = []
        for delta in deltas:
            for piece in pieces(delta):
                self.seq += 1
                value = encode_delta(DeltaMessage(self.origin, self.seq, piece))
                sent.append(
                    await self._producer.send(
                        self.config.deltas_topic, value, key=self.origin.encode()
                    )
                )
        await asyncio.gather(*sent)
        self.acked.add(sum(len(delta) for delta in deltas))

    # --- service ---------------------------------------------------------------------
    async def on_start(self) -> None:
        if not self.config.enabled:
            return
        options = self.rt.settings.kafka_connection.client_options()
        self._producer = AIOKafkaProducer(
            **options, acks="all", client_id=f"{self.writer}-stats", max_request_size=2 << 20
        )
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            **options,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=f"{self.writer}-stats",
        )
        await self._consumer.start()

    async def on_stop(self) -> None:
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()

    @Service.task
    async def _follow(self) -> None:
        if not self.config.enabled:
            return
        await self._attached.wait()
        tp = TopicPartition(self.config.deltas_topic, 0)
        await self._catch_up(tp)
        last_checkpoint = time.monotonic()
        interval = self.config.apply_ms / 1000
        while not self.should_stop:
            began = time.monotonic()
            await self._fetch(tp, int(self.config.apply_ms))
            if time.monotonic() - last_checkpoint >= self.config.checkpoint_s:
                try:
                    await self._checkpoint()
                except Exception as exc:  # the previous one still stands; the next one retries
                    if self.should_stop:
                        return
                    log.warning("stats checkpoint not written: %s: %s", type(exc).__name__, exc)
                last_checkpoint = time.monotonic()
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))

    async def _catch_up(self, tp: TopicPartition) -> None:
        """Restore the newest checkpoint, then apply the deltas topic from its offsets (or
        the beginning) to the end it had when this began."""
        consumer = self._consumer
        assert consumer is not None and self.shared is not None
        started = time.monotonic()
        checkpoint = await self._restore()
        consumer.assign([tp])
        start = checkpoint.offsets.get(tp.partition) if checkpoint is not None else None
        if start is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, start)
        first = await consumer.position(tp)
        target = (await consumer.end_offsets([tp]))[tp]
        while await consumer.position(tp) < target:
            await self._fetch(tp, 1000)
        log.info(
            "global statistics caught up in %.2f s: %d events, deltas-topic offsets %d to %d "
            "replayed",
            time.monotonic() - started,
            self.shared.events,
            first,
            target,
        )
        self.caught_up.set()
        self.rt.stats_caught_up = True

    async def _fetch(self, tp: TopicPartition, timeout_ms: int) -> None:
        assert self._consumer is not None
        fetched = await self._consumer.getmany(tp, timeout_ms=timeout_ms, max_records=2000)
        if fetched.get(tp):
            await self._apply(fetched[tp])

    async def _apply(self, records: list[ConsumerRecord]) -> None:
        committed = await self.rt.run(self._commit_records, records)
        now = time.time()
        for record, count in zip(records, committed, strict=True):
            if count:
                self.delay.observe(max(0.0, now - record.timestamp / 1000))
                self.remote_events.inc(count)
        assert self.shared is not None
        self.events.set(self.shared.events)

    def _commit_records(self, records: list[ConsumerRecord]) -> list[int]:
        """On the compute thread: commit the other workers' deltas of ``records``; returns
        how many events each record added."""
        assert self.shared is not None
        out = []
        for record in records:
            self._offsets[record.partition] = record.offset + 1
            out.append(0)
            try:
                message = decode_delta(record.value or b"")
            except ValueError as err:
                log.warning("deltas topic offset %d skipped: %s", record.offset, err)
                continue
            restored_origin, restored_seq = self._skip
            if message.origin == self.origin or (
                message.origin == restored_origin and message.seq <= restored_seq
            ):
                continue  # in this worker's statistics already
            out[-1] = len(self.shared.commit(message.delta))
            self._foreign += out[-1]
        return out

    # --- checkpoints -----------------------------------------------------------------
    async def _restore(self) -> Checkpoint | None:
        """Restore the newest complete checkpoint of the topic, if any (None otherwise)."""
        found = read_checkpoints(latest_values(await self._read_checkpoints_topic()))
        own = found.get(self.writer)
        self._slot = 1 - own.slot if own is not None else 0  # never overwrite one's last
        checkpoint = newest(found)
        if checkpoint is None:
            log.info("no stats checkpoint: replaying the whole deltas topic")
            return None
        try:
            await self.rt.run(self._restore_now, checkpoint)
        except ValueError as err:
            log.warning(
                "stats checkpoint %s not used (%s): replaying everything", checkpoint.id, err
            )
            return None
        log.info(
            "stats checkpoint %s restored: %d events, deltas from offset %s",
            checkpoint.id,
            self.shared.events if self.shared else 0,
            checkpoint.offsets,
        )
        return checkpoint

    def _restore_now(self, checkpoint: Checkpoint) -> None:
        assert self.shared is not None
        self.shared.restore(checkpoint.snapshot)
        self._foreign = self.shared.events  # replaced everything counted before
        self._offsets = dict(checkpoint.offsets)
        self._skip = (checkpoint.origin, checkpoint.seq)

    async def _read_checkpoints_topic(self) -> list[tuple[bytes | None, bytes | None]]:
        tp = TopicPartition(self.config.checkpoints_topic, 0)
        consumer = AIOKafkaConsumer(
            **self.rt.settings.kafka_connection.client_options(),
            group_id=None,
            enable_auto_commit=False,
            client_id=f"{self.writer}-stats-restore",
            max_partition_fetch_bytes=4 << 20,
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            out: list[tuple[bytes | None, bytes | None]] = []
            while await consumer.position(tp) < end:
                for batch in (await consumer.getmany(tp, timeout_ms=1000)).values():
                    out += [(r.key, r.value) for r in batch if r.offset < end]
            return out
        finally:
            await consumer.stop()

    async def _checkpoint(self) -> None:
        """Write a checkpoint of the statistics as they stand, once this worker's deltas in
        it are on the broker (see the module doc)."""
        assert self._producer is not None
        started = time.monotonic()
        checkpoint, own = await self.rt.run(self._snapshot_now)
        if not await self.acked.reach(own, self.ack_wait_s):
            log.warning(
                "stats checkpoint skipped: %d of its %d own events not acknowledged by the "
                "broker after %.1f s",
                own - self.acked.count,
                own,
                self.ack_wait_s,
            )
            return
        loop = asyncio.get_running_loop()
        records = await loop.run_in_executor(None, checkpoint_records, self.writer, checkpoint)
        topic = self.config.checkpoints_topic
        chunks = [await self._producer.send(topic, v, key=k) for k, v in records[:-1]]
        await asyncio.gather(*chunks)
        key, manifest = records[-1]
        await (await self._producer.send(topic, manifest, key=key))
        self._slot = 1 - self._slot
        self.checkpoints.inc()
        size = sum(len(v) for _, v in records)
        self.checkpoint_bytes.set(size)
        log.info(
            "stats checkpoint %s written in %.2f s: %d bytes in %d records, deltas to offset %s",
            checkpoint.id,
            time.monotonic() - started,
            size,
            len(records),
            checkpoint.offsets,
        )

    def _snapshot_now(self) -> tuple[Checkpoint, int]:
        """On the compute thread: the checkpoint, and how many of its events are this
        worker's own."""
        assert self.shared is not None
        checkpoint = Checkpoint(
            uuid.uuid4().hex,
            int(time.time() * 1000),
            dict(self._offsets),
            self.origin,
            self.seq,
            self.shared.snapshot(),
            self._slot,
        )
        return checkpoint, self.shared.events - self._foreign

    # --- what the debug route shows --------------------------------------------------
    def describe(self, engine: Engine, k: int) -> dict[str, Any]:
        """On the compute thread: what a test or an operator compares across workers: events
        counted, the top ``k`` popular items with their counts, and the co-visitation score
        of each of the top 20 with each of them (null without co-visitation)."""
        ids, counts = engine.popular.top()
        probe = ids[:20]
        covis = engine.covis
        return {
            "enabled": self.config.enabled,
            "caught_up": self.caught_up.is_set(),
            "events": self.shared.events if self.shared is not None else None,
            "offsets": {str(p): o for p, o in self._offsets.items()},
            "popular": {"items": ids[:k], "counts": [float(c) for c in counts[:k]]},
            "covis": None
            if covis is None
            else {
                "items": probe,
                "scores": covis.scores([[i] for i in probe], [probe] * len(probe)).tolist(),
            },
        }


def register(rt: Runtime, config: StatsConfig) -> GlobalStats:
    """Start the global statistics with the worker (after table recovery)."""
    stats = GlobalStats(rt, config, loop=rt.app.loop)
    rt.global_stats = stats
    rt.stats_caught_up = not config.enabled

    @rt.app.task
    async def follow_stats() -> None:
        await rt.app.add_runtime_dependency(stats)

    return stats
