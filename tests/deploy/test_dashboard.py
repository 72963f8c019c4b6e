"""The Grafana dashboard queries only what a worker exports: every metric name and every
`by (...)` label of its PromQL is checked against the worker's own prometheus-client
registry (streams/metrics.py), so a renamed metric cannot leave an empty panel."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from deploy_files import DEPLOY
from prometheus_client.metrics import MetricWrapperBase

from streamrec.streams.live import LiveConfig, LiveMetrics
from streamrec.streams.metrics import Metrics

DASHBOARD = DEPLOY / "grafana" / "streamrec-dashboard.json"
#: Labels Prometheus itself attaches to every scraped series, and the histogram bucket.
TARGET_LABELS = {"instance", "job", "le"}
#: Series a family of each type exposes (the text exposition format).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
}


def exported() -> dict[str, set[str]]:
    """Series name → label names, for every metric of a worker's registry (lag included,
    which the runtime registers with ``watch_lag``, and the live quality metrics, which the
    personalize agent adds to the same registry)."""
    metrics = Metrics()
    metrics.watch_lag(lambda: {("events", 0): 0})
    live = LiveMetrics(metrics.registry, LiveConfig((10, 20)))
    # give labelled metrics one child to expose
    for wrapper in [*vars(metrics).values(), *vars(live).values()]:
        if isinstance(wrapper, MetricWrapperBase) and wrapper._labelnames:
            wrapper.labels(*("x" for _ in wrapper._labelnames))
    series: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        labels = {k for s in family.samples for k in s.labels} - {"le"}
        for suffix in SUFFIXES[family.type]:
            series[family.name + suffix] = labels
    return series


def queries() -> list[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_the_dashboard_has_queries():
    assert len(queries()) >= 8


@pytest.mark.parametrize("expr", queries())
def test_query_uses_only_exported_metrics_and_their_labels(expr: str):
    series = exported()
    names = set(re.findall(r"\bstreamrec_[a-z0-9_]+", expr))
    assert names, expr
    assert names <= series.keys(), f"not exported: {sorted(names - series.keys())}"
    allowed = TARGET_LABELS.union(*(series[n] for n in names))
    for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
        labels = {label.strip() for label in group.split(",")}
        assert labels <= allowed, f"{expr}: no label {sorted(labels - allowed)}"


def test_the_registry_listing_sees_every_family():
    series = exported()
    assert series["streamrec_dlq_total"] == {"reason"}
    assert series["streamrec_consumer_lag"] == {"topic", "partition"}
    assert "streamrec_stage_seconds_bucket" in series
