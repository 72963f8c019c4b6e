"""What one worker process holds besides the Faust app: topics, tables, the engine, metrics.

The engine (index + reranker) is loaded once, off the event loop, and every engine call —
a micro-batch of events, a catalog change — runs on one dedicated compute thread. One
thread serializes index searches and index mutations (FAISS indexes are not safe to
search while being modified), keeps each worker at one compute core (DESIGN.md "Speed"),
and leaves the event loop free for heartbeats, fetches, commits and HTTP while a batch is
computed. Tables are only touched on the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

import faust
from faust.streams import _current_event
from faust.types import TP, EventT

from streamrec.config import Settings
from streamrec.streams.codec import MSGPACK
from streamrec.streams.dlq import DeadLetters
from streamrec.streams.metrics import Metrics

if TYPE_CHECKING:
    from streamrec.streams.core.engine import Engine

T = TypeVar("T")

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
        #: Next offset to process per events partition, for the lag gauge.
        self.positions: dict[TP, int] = {}

        s = settings
        self.events = app.topic(
            s.topic_events, key_serializer=RAW, value_serializer=RAW, partitions=s.partitions
        )
        self.recommendations = app.topic(
            s.topic_recommendations, key_serializer=RAW, value_serializer=RAW
        )
        self.dlq_topic = app.topic(s.topic_dlq, key_serializer=RAW, value_serializer=RAW)
        self.dead_letters = DeadLetters(
            self.dlq_topic, self.worker_name, lambda reason: self.metrics.dlq.labels(reason).inc()
        )
        #: user_id -> UserState.to_map(); RocksDB + changelog, co-partitioned with events.
        self.user_state = self._table(
            "user_state", "Per-user state: recent actions, embedding(s), counters, applied ids."
        )
        #: user_id -> latest Recommendation.to_map(), read by GET /recommendations.
        self.recs = self._table("recs", "Latest recommendations per user, served over HTTP.")
        self.metrics.watch_lag(self.consumer_lag)

    def _table(self, name: str, help: str) -> faust.Table:
        """A table keyed by the raw UTF-8 user id, with msgpack values.

        Raw keys matter: ``table_route`` finds a key's owner by hashing the key as the
        changelog topic serializes it, which must be the bytes the events producers hash
        (the UTF-8 user id), or HTTP reads go to a worker that does not hold the user. Faust
        derives the changelog topic's serializers from the key and value *types* when the
        table is made: ``bytes`` keys give raw. Values use msgpack, in the store and on the
        changelog topic alike.
        """
        table = cast(
            faust.Table,
            self.app.Table(name, key_type=bytes, partitions=self.settings.partitions, help=help),
        )
        table.value_serializer = MSGPACK
        # app.Table() already built the changelog topic with the serializer faust derived
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
            "tables_recovered": recovery.completed.is_set() and not recovery.in_recovery,
        }

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
