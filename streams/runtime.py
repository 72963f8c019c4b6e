"""What one worker process holds besides the Faust app: topics, tables, the engine, metrics.

The engine (index + reranker) is loaded once, off the event loop, and every engine call —
a micro-batch of events, a catalog change — runs on one dedicated compute thread. One
thread serializes index searches and index mutations (FAISS indexes are not safe to
search while being modified), keeps each worker at one compute core (DESIGN.md "Speed"),
and leaves the event loop free for heartbeats, fetches, commits and HTTP while a batch is
computed. Tables are only touched on the loop.

Health is honest (:meth:`Runtime.readiness`): besides tables, engine and catalog, the worker
is ready only while the broker answers (a probe every ``worker_broker_probe_s``) and its
consumer lag is under ``worker_ready_max_lag``. During a broker outage the Kafka clients
log the same failure thousands of times a second; :class:`RepeatFilter` lets one line per
kind through per ``worker_log_interval_s``, with a count. A stop (SIGTERM) is bounded by
``worker_shutdown_timeout_s`` (:meth:`Runtime.on_stopping`): Faust's stop waits for the
in-flight batch, whose sends wait for a broker that may never come back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

import faust
from faust.streams import _current_event
from faust.types import TP, EventT, StreamT

from streamrec.config import Settings
from streamrec.streams.codec import MSGPACK
from streamrec.streams.dlq import DeadLetters
from streamrec.streams.emit import BatchedSender, QueuedChangelogTable
from streamrec.streams.metrics import Metrics
from streamrec.streams.wire import TsWindow

if TYPE_CHECKING:
    from streamrec.streams.core.engine import Engine
    from streamrec.streams.shared_stats import GlobalStats

T = TypeVar("T")

log = logging.getLogger(__name__)

#: Exit status of a worker whose stop did not finish within ``worker_shutdown_timeout_s``.
EXIT_STOP_TIMEOUT = 75

#: Kafka topics carry raw bytes; the worker decodes them itself so a bad record can be
#: sent to the DLQ exactly as it arrived.
RAW = "raw"


@contextmanager
def in_partition_of(event: EventT) -> Iterator[None]:
    """Table reads and writes inside this block go to ``event``'s partition.

    Faust places a table key by the stream's *current* event. One micro-batch spans many
    partitions, so each user's state must be read and written in the context of that
    user's own event, or it would be stored beside (and recovered with) another partition.
    """
    import weakref

    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def hold_back(batch: Sequence[EventT]) -> None:
    """Make sure the offsets of ``batch`` are never committed by this worker.

    Faust's ``take_events`` acks every event of a batch when the agent leaves it, even by an
    exception, and commits acked offsets in the background. Marking the messages acked
    *without* telling the consumer makes Faust skip them (``Message.ack`` is a no-op for
    an acked message) while their offsets never reach the consumer's acked list: its
    committed offset stops before the first of them, so they are redelivered after a
    restart — whatever stops the worker next (an orderly stop commits only up to them).
    """
    for event in batch:
        event.message.acked = True


def defer_ack(batch: Sequence[EventT]) -> None:
    """Keep Faust's own ack of ``batch`` (when the agent takes the next batch) from making
    its offsets committable: one more reference per message, dropped by :func:`release`
    once the batch's outputs are on the broker (or never, when it is :func:`hold_back`).
    Until then the consumer counts the messages as in flight, so a rebalance waits for them.

    The conductor gives each message one reference per stream reading it; a message put
    straight onto the agent's channel (Faust's ``test_context``) has none yet, and gets the
    stream's one here too, so Faust's ack is never the final one."""
    for event in batch:
        event.message.incref(1 if event.message.refcount else 2)


async def release(stream: StreamT, batch: Sequence[EventT]) -> None:
    """The deferred ack of :func:`defer_ack`: ``batch``'s offsets become committable (a
    held-back batch stays uncommitted: its messages count as acked already)."""
    for event in batch:
        await stream.ack(event)


def rocksdb_options(settings: Settings) -> dict[str, int]:
    """Memory limits of each RocksDB store (one per table partition held, standbys too).

    Faust's defaults — 3 memtables of 64 MB and a 2 GB block cache per partition — let a
    worker's resident memory grow towards gigabytes as its tables fill; with these, a
    worker holding P table partitions uses at most P x (2 x write buffer + cache) for
    RocksDB.
    """
    mb = 1024 * 1024
    return {
        "write_buffer_size": settings.worker_rocksdb_write_buffer_mb * mb,
        "max_write_buffer_number": 2,
        "block_cache_size": settings.worker_rocksdb_cache_mb * mb,
        "block_cache_compressed_size": settings.worker_rocksdb_cache_mb * mb,
    }


class StoreOnlyTable(faust.Table):
    """A table whose writes stay in this worker's own store: no changelog message, so
    nothing to recover or keep on standby elsewhere (``worker_recs_changelog`` off)."""

    def on_key_set(self, key: Any, value: Any) -> None:
        self._sensor_on_set(self, key, value)

    def on_key_del(self, key: Any) -> None:
        self._sensor_on_del(self, key)


class RepeatFilter(logging.Filter):
    """Lets one warning or error of a kind through per ``interval_s``, with a count.

    A kind is the logger, level and message template with its digits blanked (so "node 1"
    and "node 2" are one kind). The first record of a kind passes; repeats within the
    interval are counted and dropped; the first one after it passes, saying how many were
    held back. Records below WARNING always pass. One instance may sit on several handlers:
    each record is judged once.
    """

    MAX_KINDS = 1000

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._kinds: dict[tuple[str, int, str], list[float]] = {}  # kind -> [since, held]

    def filter(self, record: logging.LogRecord) -> bool:
        verdict = getattr(record, "_streamrec_repeat", None)
        if verdict is None:
            verdict = self._judge(record)
            record._streamrec_repeat = verdict
        return bool(verdict)

    def _judge(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        kind = (record.name, record.levelno, re.sub(r"\d+", "#", f"{record.msg}{exc}"))
        now = self._clock()
        entry = self._kinds.get(kind)
        if entry is not None and now - entry[0] < self.interval_s:
            entry[1] += 1
            return False
        if len(self._kinds) >= self.MAX_KINDS:
            self._kinds.clear()
        self._kinds[kind] = [now, 0]
        if entry is not None and entry[1]:
            record.msg = f"{record.msg} [{int(entry[1])} more like this held back]"
        return True


class Runtime:
    """One worker's topics, tables, engine, compute thread, metrics and readiness."""

    def __init__(
        self, app: faust.App, settings: Settings, load_engine: Callable[[], Engine] | None = None
    ) -> None:
        self.app = app
        self.settings = settings
        self.worker_name = (
            f"{settings.worker_app_id}@{settings.worker_web_host}:{settings.worker_web_port}"
        )
        self.metrics = Metrics()
        self.compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamrec-engine")
        self._load_engine = load_engine or self._load_from_artifacts
        self._engine: Engine | None = None
        self._engine_loading: asyncio.Future[Engine] | None = None
        self.items_caught_up = False
        #: Set by :func:`streamrec.streams.shared_stats.register` (global statistics).
        self.global_stats: GlobalStats
        self.stats_caught_up = False
        #: Next offset to process per events partition, for the lag gauge.
        self.positions: dict[TP, int] = {}

        s = settings
        self.events = app.topic(
            s.topic_events, key_serializer=RAW, value_serializer=RAW, partitions=s.partitions
        )
        #: What a batch's recommendations and table changelog records go out through.
        self.sender = BatchedSender.of_app(app)
        self.dlq_topic = app.topic(s.topic_dlq, key_serializer=RAW, value_serializer=RAW)
        self.dead_letters = DeadLetters(
            self.dlq_topic,
            self.worker_name,
            lambda reason: self.metrics.dlq.labels(reason).inc(),
            max_kept=s.worker_dlq_max_kept_bytes,
            attempts=s.worker_dlq_send_attempts,
        )
        self.ts_window = TsWindow(s.worker_ts_min_ms, int(s.worker_ts_max_future_s * 1000))
        #: Whether the broker answered the last probe (see :meth:`probe_broker`).
        self.broker_reachable = False
        self._stop_timer: threading.Timer | None = None
        #: user_id -> UserState.to_map(); RocksDB + changelog, co-partitioned with events.
        self.user_state = self._table(
            "user_state", "Per-user state: recent actions, embedding(s), counters, applied ids."
        )
        #: user_id -> latest Recommendation.to_map(), read by GET /recommendations.
        self.recs = self._table(
            "recs",
            "Latest recommendations per user, served over HTTP.",
            changelog=s.worker_recs_changelog,
        )
        self.metrics.watch_lag(self.consumer_lag)
        app.task(self._watch)

    async def _watch(self) -> None:
        """Started with the app: rate-limit repeated log lines, then probe the broker."""
        self.limit_repeated_logs()
        await self.probe_broker()

    def _table(self, name: str, help: str, changelog: bool = True) -> faust.Table:
        """A table keyed by the raw UTF-8 user id, with msgpack values.

        Raw keys matter: ``table_route`` finds a key's owner by hashing the key as the
        changelog topic serializes it, which must be the bytes the events producers hash
        (the UTF-8 user id), or HTTP reads go to a worker that does not hold the user. Faust
        derives the changelog topic's serializers from the key and value *types* when the
        table is made: ``bytes`` keys give raw. Values use msgpack, in the store and on the
        changelog topic alike. A write queues its changelog record for :attr:`sender`
        (:class:`~.emit.QueuedChangelogTable`); without ``changelog``
        (:class:`StoreOnlyTable`), writes stay in this worker's store.
        """
        s = self.settings
        kind: type[faust.Table[Any, Any]] = QueuedChangelogTable if changelog else StoreOnlyTable
        made = kind(
            self.app,
            name=name,
            beacon=self.app.tables.beacon,
            key_type=bytes,
            partitions=s.partitions,
            help=help,
            options=rocksdb_options(s) if s.worker_store.startswith("rocksdb") else None,
        )
        table = cast(faust.Table, self.app.tables.add(made))
        table.value_serializer = MSGPACK
        # The table already built the changelog topic with the serializer faust derived
        # from the value type (json): writes used msgpack but recovery decoded json, so a
        # worker that had to read its changelog (restart after a crash, rebalance, standby)
        # dropped every record and stalled. Rebuild it before the app starts.
        table.changelog_topic = table._new_changelog_topic()
        return table

    # --- the engine ----------------------------------------------------------------
    def _load_from_artifacts(self) -> Engine:
        from streamrec.streams.core.loader import load_engine

        return load_engine(self.settings.worker_artifacts_dir, self.settings)

    async def engine(self) -> Engine:
        """The engine, loaded on first use on the compute thread (index + model)."""
        if self._engine is not None:
            return self._engine
        if self._engine_loading is None:
            self._engine_loading = asyncio.ensure_future(self.run(self._load_engine))
        self._engine = await asyncio.shield(self._engine_loading)
        return self._engine

    @property
    def engine_loaded(self) -> bool:
        return self._engine is not None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the compute thread and await its result."""
        return await asyncio.get_running_loop().run_in_executor(self.compute, fn, *args)

    # --- health --------------------------------------------------------------------
    def readiness(self) -> dict[str, bool]:
        """Each readiness condition; the worker is ready when all hold."""
        recovery = self.app.tables.recovery  # type: ignore[attr-defined]
        return {
            "engine_loaded": self.engine_loaded,
            "catalog_caught_up": self.items_caught_up,
            "stats_caught_up": self.stats_caught_up,
            "tables_recovered": recovery.completed.is_set() and not recovery.in_recovery,
            "broker_reachable": self.broker_reachable,
            "lag_ok": sum(self.consumer_lag().values()) <= self.settings.worker_ready_max_lag,
        }

    async def probe_broker(self) -> None:
        """Ask the broker for the events partitions' end offsets every
        ``worker_broker_probe_s``; no answer within that time marks it unreachable until one
        comes. One probe at a time: a hung one is awaited, not stacked."""
        interval = self.settings.worker_broker_probe_s
        tps = [TP(self.settings.topic_events, p) for p in range(self.settings.partitions)]
        while not self.app.should_stop:
            probe = asyncio.ensure_future(self.app.consumer.highwaters(*tps))
            done, _ = await asyncio.wait({probe}, timeout=interval)
            if not done:
                self.broker_reachable = False
                await asyncio.wait({probe})
            self.broker_reachable = not probe.cancelled() and probe.exception() is None
            await asyncio.sleep(interval)

    def limit_repeated_logs(self) -> None:
        """Put one :class:`RepeatFilter` on every handler of the root logger (Faust's
        worker has set logging up by the time the app starts)."""
        repeat = RepeatFilter(self.settings.worker_log_interval_s)
        for handler in logging.getLogger().handlers:
            handler.addFilter(repeat)

    def on_stopping(self) -> None:
        """The worker is stopping: make sure the process exits within
        ``worker_shutdown_timeout_s``, even when the stop waits for an unreachable broker.
        Nothing unfinished is committed by the forced exit (see :func:`hold_back`)."""
        if self._stop_timer is not None or not getattr(self.app, "in_worker", False):
            return
        timeout = self.settings.worker_shutdown_timeout_s

        def force_exit() -> None:
            log.critical("stop did not finish within %gs; exiting without it", timeout)
            logging.shutdown()
            os._exit(EXIT_STOP_TIMEOUT)

        self._stop_timer = threading.Timer(timeout, force_exit)
        self._stop_timer.daemon = True
        self._stop_timer.start()

    def consumer_lag(self) -> dict[tuple[str, int], int]:
        """Unprocessed messages per assigned events partition (high-water − position)."""
        consumer = self.app._consumer  # not created until the worker starts
        if consumer is None:
            return {}
        lag = {}
        for tp in consumer.assignment():
            if tp.topic != self.settings.topic_events:
                continue
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            position = self.positions.get(tp)
            if position is None:
                continue
            lag[(tp.topic, tp.partition)] = max(0, highwater - position)
        return lag

    @staticmethod
    def now_ms() -> int:
        return int(time.time() * 1000)
