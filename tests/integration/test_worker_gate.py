"""A worker given a model whose `streamrec train` run missed its gate: it refuses to start,
in one line naming the failed check, or with ``--allow-failed-model`` it warns in one line
and serves the model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from worker_support import STREAMREC, Topics, first_events, produce_events, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAILED = {
    "name": "student is faster than the teacher",
    "passed": False,
    "detail": "teacher (ONNX) / student CPU time per call, median of per-call ratios = 1.6x "
    "(need >= 5x)",
}


@pytest.fixture
def failed_artifacts(artifacts: tuple[Path, Path], tmp_path: Path) -> Path:
    """The session's quick artifacts, their manifest's gate verdict turned to failed (what
    `streamrec train` writes for a model that missed it: tests/training/test_train.py)."""
    _, art = artifacts
    out = tmp_path / "failed-artifacts"
    shutil.copytree(art, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["gate"] = {"passed": False, "failed": [FAILED]}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_the_worker_refuses_a_failed_model_in_one_line(
    failed_artifacts: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    env["STREAMREC_KAFKA_BOOTSTRAP"] = "127.0.0.1:9"  # never reached: it stops before Kafka
    result = subprocess.run(
        [*STREAMREC, "worker", "--artifacts", str(failed_artifacts),
         "--data-dir", str(tmp_path / "store")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "failed its training gate" in lines[0]
    assert FAILED["name"] in lines[0] and "1.6x (need >= 5x)" in lines[0]
    assert "--allow-failed-model" in lines[0]
    assert not (tmp_path / "store").exists()


def test_with_allow_failed_model_it_warns_once_and_serves_it(
    kafka_bootstrap: str,
    make_topic,
    new_worker,
    artifacts: tuple[Path, Path],
    failed_artifacts: Path,
) -> None:
    data, _ = artifacts
    topics = Topics.make(make_topic, partitions=2)
    worker = new_worker(
        topics, failed_artifacts, partitions=2, args=["--allow-failed-model"],
        allow_failed_model="false",  # the flag alone allows it
    )  # fmt: skip
    worker.start().wait_ready()
    warned = [line for line in worker.log().splitlines() if "failed its training gate" in line]
    assert len(warned) == 1, worker.log()[-3000:]
    assert FAILED["name"] in warned[0] and "serving it anyway" in warned[0]

    events = first_events(data, 40)
    produce_events(kafka_bootstrap, topics.events, events)
    recs = read_topic(kafka_bootstrap, topics.recommendations, lambda v: len(v) >= len(events))
    version = json.loads((failed_artifacts / "manifest.json").read_text())["model_version"]
    assert any(r["source"] == "personalized" and r["model_version"] == version for r in recs)
