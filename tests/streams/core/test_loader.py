"""load_engine: an artifacts directory (saved index, optional reranker) to a ready engine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from streamrec.config import Settings
from streamrec.index import CandidateIndex
from streamrec.streams.core.loader import load_engine
from streamrec.streams.core.rules import MultiInterest
from streamrec.streams.wire import Event


def artifacts(tmp_path: Path, index: CandidateIndex, reranker: Path | None) -> Path:
    index.save(tmp_path / "index")
    if reranker is not None:
        shutil.copy(reranker, tmp_path / "reranker.onnx")
    return tmp_path


def test_loads_index_reranker_and_rule_from_settings(
    tmp_path: Path, index: CandidateIndex, reranker_onnx: Path
) -> None:
    settings = Settings(engine_rule="multi", engine_interests=3, engine_k=5, engine_device="cpu")
    engine = load_engine(artifacts(tmp_path, index, reranker_onnx), settings)
    assert engine.scorer is not None and engine.model_version == "core-test"
    assert isinstance(engine.rule, MultiInterest) and engine.rule.max_queries == 3
    assert len(engine.index) == len(index)
    [rec] = engine.process([Event("e", "u", "item3", "save", 0)], {})
    assert len(rec.items) == 5 and rec.source == "personalized"


def test_without_a_reranker_the_engine_serves_retrieval_order(
    tmp_path: Path, index: CandidateIndex
) -> None:
    engine = load_engine(artifacts(tmp_path, index, None), Settings(engine_device="cpu"))
    assert engine.scorer is None and engine.model_version == "retrieval"


def test_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no index/ directory"):
        load_engine(tmp_path, Settings())
