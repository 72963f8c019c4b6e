"""load_engine: an artifacts directory (saved index, optional reranker) to a ready engine."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
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


@pytest.mark.gpu
def test_gpu_engine_serves_what_the_cpu_engine_serves(
    tmp_path: Path, index: CandidateIndex, reranker_onnx: Path
) -> None:
    import faiss
    import onnxruntime as ort

    if faiss.get_num_gpus() == 0 or "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("no GPU for faiss and onnxruntime on this machine")
    artifacts(tmp_path, index, reranker_onnx)
    events = [Event(f"e{j}", "u", f"item{6 * j}", "click", 1000 * j) for j in range(5)]
    cpu = load_engine(tmp_path, Settings(engine_device="cpu")).process(events, {})
    gpu_engine = load_engine(tmp_path, Settings(engine_device="gpu"))
    assert gpu_engine.index.device == "gpu"
    assert gpu_engine.scorer is not None and gpu_engine.scorer.provider == "CUDAExecutionProvider"
    gpu = gpu_engine.process(events, {})
    for c, g in zip(cpu, gpu, strict=True):
        assert c.items == g.items
        np.testing.assert_allclose(c.scores, g.scores, rtol=1e-4, atol=1e-4)


def test_popularity_starts_from_the_artifacts_so_cold_users_are_served_at_once(
    tmp_path: Path, index: CandidateIndex
) -> None:
    from streamrec.streams.core.artifacts import Artifacts
    from streamrec.streams.core.popular import Popular

    art = artifacts(tmp_path, index, None)
    # item0 most popular, then item1, ...: item k was clicked 7 - k times
    seen = [
        Event(f"{k}.{j}", "old", f"item{k}", "click", 0) for k in range(7) for j in range(7 - k)
    ]
    Popular.from_events(
        seen, half_life_s=86400.0, top_n=100, action_weights={"click": 1.0, "save": 2.0}
    ).save(Artifacts(art).popular)
    settings = Settings(engine_device="cpu", engine_cold_threshold=5, engine_k=3)
    engine = load_engine(art, settings)
    [rec] = engine.process([Event("n", "new", "item0", "click", 50_000)], {})
    assert rec.source == "popular" and rec.items == ["item1", "item2", "item3"]
    unseeded = load_engine(art, settings.model_copy(update={"engine_popular_seed": False}))
    assert unseeded.cold_recommendation(3) == []


def test_search_knobs_come_from_the_settings_not_the_build(tmp_path: Path, catalog: Any) -> None:
    from streamrec.index import build_index

    ivf = build_index(catalog.ids, catalog.vectors, kind="ivf", device="cpu", ivf_nprobe=8)
    ivf.save(tmp_path / "index")
    settings = Settings(engine_device="cpu", index_ivf_nprobe=2, index_hnsw_ef_search=99)
    engine = load_engine(tmp_path, settings)
    assert engine.index.kind == "ivf" and engine.index.params.ivf_nprobe == 2
    assert engine.index.params.hnsw_ef_search == 99
