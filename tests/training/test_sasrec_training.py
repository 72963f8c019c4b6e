"""`streamrec train`'s SASRec step: trained into the artifacts with its validation curve, or,
switched off, absent and said to be so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamrec.config import Settings
from streamrec.data.synth import SynthConfig, generate
from streamrec.models.sasrec_scorer import SASREC_META, SASREC_ONNX, SasrecScorer, left_pad
from streamrec.streams.recorded import read_events
from streamrec.training.config import TrainingConfig
from streamrec.training.pipeline import train

TINY = {
    "train_quick_examples": 400,
    "train_quick_eval_events": 200,
    "train_quick_epochs": 1,
    "train_latency_runs": 50,
    "train_embedding_dim": 16,
    "train_teacher_hidden": 16,
    "train_teacher_mlp": 32,
    "engine_candidates": 50,
    "train_sasrec_quick_epochs": 2,
}


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "world.msgpack"
    generate(SynthConfig(users=80, items=200, events=3000, seed=3, dim=16), out)
    return out


def test_train_writes_a_loadable_sasrec_with_its_validation_curve(
    events_file: Path, tmp_path: Path
) -> None:
    settings = Settings(**TINY)
    report = train(
        events_file, tmp_path, settings, TrainingConfig.from_settings(settings, quick=True)
    )
    entry = report["sasrec"]
    assert entry["trained"] and entry["epochs_run"] == 2
    assert [p["epoch"] for p in entry["curve"]] == [1.0, 2.0]
    assert {"hr@10", "ndcg@10", "loss", "seconds"} <= set(entry["curve"][0])
    assert entry["parity_max_abs_diff"] <= 1e-4
    assert entry["config"]["dim"] == 16  # --quick trains a tiny one
    assert "sasrec_s" in report["seconds"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["files"]["sasrec"] == SASREC_ONNX
    scorer = SasrecScorer.load(tmp_path)
    ids = {e.item_id for e in read_events(events_file)}
    assert set(scorer.item_ids) == ids  # every item of the training file has a row
    window = left_pad(np.arange(1, 6), scorer.seq_len)[None]
    assert scorer.scores(window, (window > 0).astype(np.int64)).shape == (1, len(ids))


def test_switched_off_no_sasrec_is_written_and_a_stale_one_is_removed(
    events_file: Path, tmp_path: Path
) -> None:
    (tmp_path / SASREC_ONNX).write_bytes(b"stale")
    (tmp_path / SASREC_META).write_text("{}")
    settings = Settings(**TINY, train_sasrec_enabled=False)
    report = train(
        events_file, tmp_path, settings, TrainingConfig.from_settings(settings, quick=True)
    )
    assert report["sasrec"] == {"trained": False, "why": "train_sasrec_enabled is off"}
    assert not (tmp_path / SASREC_ONNX).exists() and not (tmp_path / SASREC_META).exists()
    assert "sasrec" not in json.loads((tmp_path / "manifest.json").read_text())["files"]
