"""Prometheus metrics of one worker, served at ``GET /metrics``.

Each worker owns its registry (not the process-global default), so several apps in one
process — tests, the demo — never clash on metric names. Latency buckets are in seconds
and span 0.5 ms to 10 s: micro-batch compute lives at the low end, a lagging worker at the
high end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from time import perf_counter

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class _LagCollector:
    """Reports consumer lag per partition at scrape time from a callable of the app."""

    def __init__(self, lag: Callable[[], Mapping[tuple[str, int], int]]) -> None:
        self._lag = lag

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "streamrec_consumer_lag",
            "Messages not yet processed per assigned partition (high-water mark - position).",
            labels=["topic", "partition"],
        )
        for (topic, partition), lag in sorted(self._lag().items()):
            family.add_metric([topic, str(partition)], lag)
        yield family


class Metrics:
    """The worker's counters and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "streamrec_events_in", "Records consumed from the events topic.", registry=r
        )
        self.events_processed = Counter(
            "streamrec_events_processed", "Valid events turned into recommendations.", registry=r
        )
        self.dlq = Counter(
            "streamrec_dlq", "Records sent to the dead-letter topic.", ["reason"], registry=r
        )
        self.recommendations = Counter(
            "streamrec_recommendations", "Recommendation messages emitted.", ["source"], registry=r
        )
        self.batch_size = Histogram(
            "streamrec_batch_size", "Events per micro-batch.", buckets=_BATCH_BUCKETS, registry=r
        )
        self.stage_seconds = Histogram(
            "streamrec_stage_seconds",
            "Time per micro-batch spent in each stage.",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.event_to_emit_seconds = Histogram(
            "streamrec_event_to_emit_seconds",
            "From the event's append to Kafka (message timestamp) to its recommendation's emit.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.catalog_changes = Counter(
            "streamrec_catalog_changes", "Catalog changes applied to the index.", ["op"], registry=r
        )
        self.catalog_size = Gauge(
            "streamrec_catalog_items", "Items in this worker's index replica.", registry=r
        )
        self.http_requests = Counter(
            "streamrec_http_requests", "HTTP requests served.", ["view", "status"], registry=r
        )
        self.http_refused = Counter(
            "streamrec_http_refused",
            "HTTP requests refused before their view: unauthorized, busy (no free slot), timeout.",
            ["reason"],
            registry=r,
        )

    def watch_lag(self, lag: Callable[[], Mapping[tuple[str, int], int]]) -> None:
        """Report consumer lag from ``lag()`` at every scrape."""
        self.registry.register(_LagCollector(lag))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a block as one observation of stage ``name``."""
        start = perf_counter()
        try:
            yield
        finally:
            self.stage_seconds.labels(name).observe(perf_counter() - start)

    def exposition(self) -> bytes:
        """The text exposition format of every metric."""
        return generate_latest(self.registry)
