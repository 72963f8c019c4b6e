"""A model whose `streamrec train` run missed its gate is refused by ``load_engine`` in one
line naming the failed checks, or served with one warning when ``allow_failed_model``."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from streamrec.config import Settings
from streamrec.index import CandidateIndex
from streamrec.streams.core.artifacts import Artifacts
from streamrec.streams.core.loader import FailedModelError, load_engine

SLOW = {
    "name": "student is faster than the teacher",
    "passed": False,
    "detail": "teacher (ONNX) / student CPU time per call, median of per-call ratios = 1.6x "
    "(need >= 5x)",
}
BELOW_POPULAR = {
    "name": "student beats popularity order",
    "passed": False,
    "detail": "student NDCG@10 0.0500 vs popularity order 0.0600",
}


def trained(tmp_path: Path, index: CandidateIndex, reranker: Path, gate: dict | None) -> Path:
    """Artifacts as `streamrec train` writes them, with ``gate`` as the manifest's verdict."""
    index.save(tmp_path / "index")
    shutil.copy(reranker, tmp_path / "reranker.onnx")
    manifest = {"model_version": "core-test"} | ({"gate": gate} if gate is not None else {})
    Artifacts(tmp_path).manifest.write_text(json.dumps(manifest))
    return tmp_path


def test_a_failed_model_is_refused_in_one_line_naming_the_failed_checks(
    tmp_path: Path, index: CandidateIndex, reranker_onnx: Path
) -> None:
    art = trained(
        tmp_path, index, reranker_onnx, {"passed": False, "failed": [SLOW, BELOW_POPULAR]}
    )
    with pytest.raises(FailedModelError) as refused:
        load_engine(art, Settings(engine_device="cpu"))
    message = str(refused.value)
    assert "\n" not in message
    assert "model core-test failed its training gate" in message
    assert SLOW["name"] in message and BELOW_POPULAR["name"] in message
    assert "1.6x (need >= 5x)" in message
    assert "--allow-failed-model" in message and "STREAMREC_ALLOW_FAILED_MODEL" in message


def test_allowed_it_is_served_with_one_warning(
    tmp_path: Path,
    index: CandidateIndex,
    reranker_onnx: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    art = trained(tmp_path, index, reranker_onnx, {"passed": False, "failed": [SLOW]})
    settings = Settings(engine_device="cpu", allow_failed_model=True)
    with caplog.at_level(logging.WARNING, logger="streamrec.streams.core.loader"):
        engine = load_engine(art, settings)
        load_engine(art, settings)  # one process, one directory: one warning
    assert engine.scorer is not None and engine.model_version == "core-test"
    warnings = [r.getMessage() for r in caplog.records if "training gate" in r.getMessage()]
    assert len(warnings) == 1 and SLOW["name"] in warnings[0] and "serving it anyway" in warnings[0]


@pytest.mark.parametrize("gate", [{"passed": True, "failed": []}, None])
def test_a_passed_or_unjudged_model_is_served(
    tmp_path: Path, index: CandidateIndex, reranker_onnx: Path, gate: dict | None
) -> None:
    engine = load_engine(
        trained(tmp_path, index, reranker_onnx, gate), Settings(engine_device="cpu")
    )
    assert engine.scorer is not None


def test_retrieval_order_serves_no_trained_model_so_nothing_is_refused(
    tmp_path: Path, index: CandidateIndex, reranker_onnx: Path
) -> None:
    art = trained(tmp_path, index, reranker_onnx, {"passed": False, "failed": [SLOW]})
    engine = load_engine(art, Settings(engine_device="cpu", engine_reranker=""))
    assert engine.scorer is None
