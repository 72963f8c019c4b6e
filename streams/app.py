"""The Faust app of a streamrec worker, built from the one ``Settings`` object.

``create_app(settings)`` wires everything a worker runs: the personalize agent, the
catalog follower, the tables and the HTTP views. ``faust -A streamrec.streams.app worker``
finds the module attribute ``app``, built on first access from the environment's settings
(prefix ``STREAMREC_``; a bad value exits with one line); importing this module for
``create_app`` builds nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import faust

from streamrec.config import InvalidSettings, Settings, load_settings
from streamrec.streams import items, personalize, shared_stats, web
from streamrec.streams.runtime import Runtime
from streamrec.streams.topics import (
    admin_client,
    broker_count,
    describe_topics,
    ensure_topics,
    replication_warning,
    topic_configs,
)

if TYPE_CHECKING:
    from streamrec.streams.core.engine import Engine

log = logging.getLogger(__name__)


def faust_settings(settings: Settings) -> dict[str, Any]:
    """The ``faust.App`` configuration the settings imply.

    Heavy micro-batches run off the event loop (see streams/runtime.py), so heartbeats keep
    flowing; the session timeout still leaves room for a slow batch or a GC pause, and the
    poll interval for a long first engine load, before the broker evicts a worker.
    """
    s = settings
    return {
        **s.kafka_connection.faust_options(),
        "store": s.worker_store,
        "datadir": str(s.worker_data_dir / f"{s.worker_app_id}-{s.worker_web_port}"),
        "topic_partitions": s.partitions,
        "topic_replication_factor": s.replication_factor,
        "topic_disable_leader": True,
        "table_standby_replicas": s.worker_standby_replicas,
        "stream_processing_timeout": s.worker_stream_processing_timeout_s,
        "broker_session_timeout": s.worker_session_timeout_s,
        "broker_heartbeat_interval": s.worker_heartbeat_interval_s,
        "broker_max_poll_interval": s.worker_max_poll_interval_s,
        "broker_commit_interval": s.worker_commit_interval_s,
        "consumer_auto_offset_reset": s.worker_offset_reset,
        "processing_guarantee": "at_least_once",
        "web_enabled": True,
        "web_bind": s.worker_web_bind,
        "web_host": s.worker_web_host,
        "web_port": s.worker_web_port,
        # Faust's own views: /router and /table (stored user state) only when asked for,
        # graph and stats never; whatever is served needs the token (streams/web.py).
        "web_router_enabled": s.worker_faust_views,
        "web_tables_enabled": s.worker_faust_views,
        "web_graph_enabled": False,
        "web_stats_enabled": False,
        "web_metrics_enabled": False,
        "canonical_url": f"http://{s.worker_web_host}:{s.worker_web_port}",
        "autodiscover": False,
    }


class PartitionMismatch(RuntimeError):
    """The events topic's partition count differs from ``STREAMREC_PARTITIONS``."""


class StreamrecApp(faust.App):
    """A ``faust.App`` that creates its tables' changelog topics when it first starts.

    Tables are co-partitioned with events, so their changelogs get ``STREAMREC_PARTITIONS``.
    They are created here, and waited for until every partition has a leader, because when
    Faust creates one itself its very next metadata read may not show it yet (seen on a
    loaded broker): Faust then ignores the topic for good and every write to that table
    fails with PartitionsMismatch. ``on_first_start`` runs before the app's children
    (consumer, tables) start, whichever entry point — ``streamrec worker`` or
    ``faust -A streamrec.streams.app worker`` — starts the app.
    """

    async def on_first_start(self) -> None:
        await super().on_first_start()
        await asyncio.get_running_loop().run_in_executor(None, create_changelog_topics, self)

    async def on_stop(self) -> None:
        runtime_of(self).on_stopping()  # bounds the stop: it may wait for a lost broker
        await super().on_stop()


def create_changelog_topics(app: faust.App) -> None:
    """Create the missing changelog topics of ``app``'s tables (see :class:`StreamrecApp`).

    Raises :class:`PartitionMismatch` when the events topic exists with another partition
    count: changelogs of that count could not hold the tables' partitions.
    """
    s = runtime_of(app).settings
    with admin_client(s.kafka_connection) as admin:
        warning = replication_warning(broker_count(admin), s.replication_factor)
        if warning is not None:
            log.warning(warning)
        found = describe_topics(admin, [s.topic_events]).get(s.topic_events)
        if found is not None and found != s.partitions:
            raise PartitionMismatch(
                f"topic {s.topic_events!r} has {found} partitions but STREAMREC_PARTITIONS is "
                f"{s.partitions}: they must match"
            )
        ensure_topics(
            admin,
            changelog_topics(app),
            s.partitions,
            s.replication_factor,
            {**topic_configs(s), "cleanup.policy": "compact"},
        )
        shared_stats.create_topics(admin, runtime_of(app).global_stats.config)


def create_app(settings: Settings, *, load_engine: Callable[[], Engine] | None = None) -> faust.App:
    """A worker app: agents, catalog follower, tables and HTTP views.

    ``load_engine`` replaces loading the engine from ``settings.worker_artifacts_dir``
    (tests and benchmarks build one in memory).
    """
    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)  # faust makes only the leaf
    app = StreamrecApp(settings.worker_app_id, **faust_settings(settings))
    rt = Runtime(app, settings, load_engine)
    personalize.register(rt)
    items.register(rt)
    shared_stats.register(rt, stats_config(settings))
    web.register(rt)
    app.streamrec = rt  # type: ignore[attr-defined]  # the worker CLI and tests reach it here
    return app


def stats_config(settings: Settings) -> shared_stats.StatsConfig:
    """The global statistics' configuration; their topics belong to the app, like its
    changelogs (``{app id}-stats-deltas``, ``{app id}-stats-checkpoints``)."""
    s = settings
    return shared_stats.StatsConfig(
        deltas_topic=f"{s.worker_app_id}-stats-deltas",
        checkpoints_topic=f"{s.worker_app_id}-stats-checkpoints",
        enabled=s.worker_stats_global,
        apply_ms=s.worker_stats_apply_ms,
        checkpoint_s=s.worker_stats_checkpoint_s,
        dedupe_events=s.worker_stats_dedupe_events,
        retention_ms=int(s.worker_stats_retention_h * 3_600_000),
        replication_factor=s.replication_factor,
        topic_configs=topic_configs(s),
    )


def changelog_topics(app: faust.App) -> list[str]:
    """The changelog topic of each of the app's tables (``{app id}-{table}-changelog``)."""
    return [table.changelog_topic.get_topic_name() for table in app.tables.values()]


def runtime_of(app: faust.App) -> Runtime:
    """The :class:`Runtime` ``create_app`` attached to ``app``."""
    return app.streamrec  # type: ignore[attr-defined]


def __getattr__(name: str) -> faust.App:
    """``app``: the module-level app for ``faust -A streamrec.streams.app``, built once."""
    if name != "app":
        raise AttributeError(name)
    built = globals().get("_app")
    if built is None:
        try:
            settings = load_settings()
        except InvalidSettings as exc:  # one line for `faust -A`, not a validation dump
            raise SystemExit(f"error: {exc}") from None
        built = globals()["_app"] = create_app(settings)
    return built
