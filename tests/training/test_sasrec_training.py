"""`streamrec train`'s SASRec step: trained into the artifacts with its validation curve, or,
switched off, absent and said to be so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamrec.config import Settings
from streamrec.data.synth import SynthConfig, generate
from streamrec.models.sasrec_scorer import SasrecScorer, left_pad
from streamrec.streams.core.artifacts import Artifacts
from streamrec.streams.recorded import read_events
from streamrec.training.config import TrainingConfig
from streamrec.training.pipeline import train


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "world.msgpack"
    generate(SynthConfig(users=80, items=200, events=3000, seed=3, dim=16), out)
    return out


def test_train_writes_a_loadable_sasrec_with_its_validation_curve(
    events_file: Path, tmp_path: Path, tiny: dict[str, Any]
) -> None:
    settings = Settings(**tiny)
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
    out = Artifacts(tmp_path)
    manifest = json.loads(out.manifest.read_text())
    assert manifest["files"]["sasrec"] == out.sasrec.name
    scorer = SasrecScorer.load(out.sasrec, out.sasrec_meta)
    ids = {e.item_id for e in read_events(events_file)}
    assert set(scorer.item_ids) == ids  # every item of the training file has a row
    window = left_pad(np.arange(1, 6), scorer.seq_len)[None]
    assert scorer.scores(window, (window > 0).astype(np.int64)).shape == (1, len(ids))


def test_switched_off_no_sasrec_is_written_and_a_stale_one_is_removed(
    events_file: Path, tmp_path: Path, tiny: dict[str, Any]
) -> None:
    out = Artifacts(tmp_path)
    out.sasrec.write_bytes(b"stale")
    out.sasrec_meta.write_text("{}")
    settings = Settings(**tiny, train_sasrec_enabled=False)
    report = train(
        events_file, tmp_path, settings, TrainingConfig.from_settings(settings, quick=True)
    )
    assert report["sasrec"] == {"trained": False, "why": "train_sasrec_enabled is off"}
    assert not out.sasrec.exists() and not out.sasrec_meta.exists()
    assert "sasrec" not in json.loads(out.manifest.read_text())["files"]
