"""deploy/compose.yaml: valid against the Compose specification, Kafka at the local
broker's version, and every worker probed, published and scraped on the port it serves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_files import DEPLOY, healthcheck, image_env

from streamrec.config import Settings

COMPOSE = DEPLOY / "compose.yaml"


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema against the Compose spec schema it vendors (offline)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(path),
        ],
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def workers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run the worker image's entrypoint (not the one-shot topics job)."""
    return {
        name: svc
        for name, svc in compose["services"].items()
        if "build" in svc and "entrypoint" not in svc
    }


def test_compose_file_matches_the_compose_spec():
    result = check_compose(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_malformed_compose_file(tmp_path: Path):
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  worker:\n    image: streamrec:cpu\n    ports: 6066\n")
    assert check_compose(bad).returncode != 0


def test_kafka_runs_the_version_of_the_local_broker(compose: dict[str, Any]):
    image = compose["services"]["kafka"]["image"]
    assert image == f"apache/kafka:{Settings.model_fields['kafka_version'].default}"


def test_there_are_several_workers_sharing_one_app_id(compose: dict[str, Any]):
    found = workers(compose)
    assert len(found) >= 2
    assert len({svc["environment"]["STREAMREC_WORKER_APP_ID"] for svc in found.values()}) == 1


def test_each_worker_is_probed_published_and_scraped_on_the_port_it_serves(
    compose: dict[str, Any],
):
    targets = yaml.safe_load(compose["configs"]["prometheus"]["content"])["scrape_configs"][0][
        "static_configs"
    ][0]["targets"]
    probe = healthcheck()
    for name, svc in workers(compose).items():
        env = {**image_env(DEPLOY.parent / svc["build"]["dockerfile"]), **svc["environment"]}
        port = env["STREAMREC_WORKER_WEB_PORT"]
        assert probe.url(env) == f"http://127.0.0.1:{port}/healthz", name
        assert [p.split(":")[-1] for p in svc["ports"]] == [port], name
        assert f"{svc['hostname']}:{port}" in targets, name
        assert env["STREAMREC_WORKER_WEB_HOST"] == svc["hostname"], name


def test_prometheus_scrapes_without_a_token(compose: dict[str, Any]):
    """/metrics is open unless STREAMREC_WORKER_METRICS_TOKEN is set; compose sets none."""
    for svc in workers(compose).values():
        assert "STREAMREC_WORKER_METRICS_TOKEN" not in svc["environment"]
    scrape = yaml.safe_load(compose["configs"]["prometheus"]["content"])["scrape_configs"][0]
    assert scrape["metrics_path"] == "/metrics"


def test_every_streamrec_variable_compose_sets_is_a_setting(compose: dict[str, Any]):
    """A mistyped variable would be ignored by the worker: each must name a setting."""
    known = {f"STREAMREC_{name.upper()}" for name in Settings.model_fields}
    for name, svc in compose["services"].items():
        used = {k for k in svc.get("environment", {}) if k.startswith("STREAMREC_")}
        assert used - known == set(), name
