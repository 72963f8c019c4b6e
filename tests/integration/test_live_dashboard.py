"""Every PromQL query of the Grafana dashboard, run by a real Prometheus server scraping a
real worker (two A/B variants) after a short replay: each parses and returns data.

Prometheus is Debian's ``prometheus`` package (``.ci/run`` installs it); the test runs the
binary itself on a free loopback port with its own config and data directory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
from worker_support import Topics, first_events, free_port, produce, produce_events, wait_for

from streamrec.index import load_index
from streamrec.streams.items import encode_upsert

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "streamrec-dashboard.json"
VARIANTS = [
    {"name": "control", "share": 0.5},
    {"name": "b", "share": 0.5, "engine": {"covis_weight": 2.0}},
]


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every target of every panel."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


def start_prometheus(tmp_path: Path, target: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed (.ci/run: apt-get install -y prometheus)")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: streamrec\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc, f"http://127.0.0.1:{port}"


def query(api: str, expr: str) -> dict:
    response = requests.get(f"{api}/api/v1/query", params={"query": expr}, timeout=10)
    return response.json()


def test_every_dashboard_query_returns_data_from_a_real_prometheus(
    kafka_bootstrap, make_topic, new_worker, artifacts, tmp_path
):
    data, art = artifacts
    events = first_events(data, 3_000)
    topics = Topics.make(make_topic, partitions=2)
    worker = new_worker(topics, art, partitions=2, variants=json.dumps(VARIANTS)).start()
    worker.wait_ready()
    prometheus, api = start_prometheus(tmp_path, f"127.0.0.1:{worker.port}")
    try:
        wait_for(lambda: _up(api))
        # Something for every panel: events (half of them after a first scrape, so rates
        # have two points), a bad record (dead letters) and a catalog change.
        produce_events(kafka_bootstrap, topics.events, events[:1_500])
        time.sleep(3)
        vectors, _ = load_index(art / "index", device="cpu").get_vectors([events[0].item_id])
        produce(
            kafka_bootstrap, topics.items, [(b"new-1", encode_upsert("new-1", vectors[0].tolist()))]
        )
        produce(kafka_bootstrap, topics.events, [(b"u-bad", b"\xc1 not msgpack")])
        produce_events(kafka_bootstrap, topics.events, events[1_500:])
        wait_for(lambda: worker.metric("streamrec_events_processed_total") >= len(events), 120)
        time.sleep(4)  # a few scrapes after the last batch

        empty = []
        for title, expr in dashboard_queries():
            answer = query(api, expr)
            assert answer["status"] == "success", (title, expr, answer)
            if not answer["data"]["result"]:
                empty.append((title, expr))
        assert not empty, empty
        per_variant = next(e for t, e in dashboard_queries() if t.startswith("Live HR@10 per"))
        variants = query(api, per_variant)["data"]["result"]
        assert {r["metric"]["variant"] for r in variants} == {"control", "b"}
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)


def _up(api: str) -> bool:
    try:
        result = query(api, 'up{job="streamrec"}')["data"]["result"]
    except requests.RequestException:
        return False
    return bool(result) and result[0]["value"][1] == "1"
