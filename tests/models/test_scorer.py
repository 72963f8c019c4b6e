"""The run-time scorer: loads only files whose feature spec matches, scores in one batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from streamrec.models.export import export_onnx, quantize_int8
from streamrec.models.metadata import FeatureSpecMismatch, ModelFileError, ModelMetadata
from streamrec.models.scorer import CPU, CUDA, Scorer
from streamrec.models.student import Student


def test_scores_match_pytorch_in_one_batched_call(
    features: tuple[str, ...], student_onnx: Path, student: Student, rows: np.ndarray
) -> None:
    scorer = Scorer.load(student_onnx, features, device="cpu")
    got = scorer.score(rows)
    with torch.no_grad():
        want = student(torch.from_numpy(rows)).numpy()
    assert got.shape == (200,) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert scorer.provider == CPU
    assert scorer.model_version == "test-1"
    assert scorer.feature_names == features


def test_metadata_round_trips_through_the_file(
    features: tuple[str, ...], student_onnx: Path, metadata: ModelMetadata
) -> None:
    scorer = Scorer.load(student_onnx, features, device="cpu")
    assert scorer.metadata == metadata


def test_int8_variant_keeps_metadata_and_stays_close(
    features: tuple[str, ...],
    tmp_path: Path,
    student_onnx: Path,
    metadata: ModelMetadata,
    rows: np.ndarray,
) -> None:
    int8 = quantize_int8(student_onnx, tmp_path / "reranker.int8.onnx", metadata)
    fp32 = Scorer.load(student_onnx, features, device="cpu").score(rows)
    quant = Scorer.load(int8, features, device="cpu")
    assert quant.metadata == metadata
    assert np.corrcoef(fp32, quant.score(rows))[0, 1] > 0.98
    op_types = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert op_types & {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}


def test_empty_batch_gives_no_scores(features: tuple[str, ...], student_onnx: Path) -> None:
    scorer = Scorer.load(student_onnx, features, device="cpu")
    assert scorer.score(np.zeros((0, len(features)), np.float32)).shape == (0,)


def test_wrong_feature_width_is_refused(features: tuple[str, ...], student_onnx: Path) -> None:
    scorer = Scorer.load(student_onnx, features, device="cpu")
    with pytest.raises(ValueError, match=r"features must be \[n, 5\]"):
        scorer.score(np.zeros((3, 4), np.float32))


def test_corrupt_file_is_a_clear_error(
    features: tuple[str, ...], tmp_path: Path, student_onnx: Path
) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(student_onnx.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="broken.onnx: not a loadable ONNX model"):
        Scorer.load(broken, features)


def test_missing_file_is_a_clear_error(features: tuple[str, ...], tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such reranker file"):
        Scorer.load(tmp_path / "nope.onnx", features)


def test_onnx_file_without_feature_spec_is_refused(
    features: tuple[str, ...], tmp_path: Path, student: Student
) -> None:
    bare = export_onnx(student, {"features": torch.zeros(2, len(features))}, tmp_path / "b.onnx")
    with pytest.raises(ModelFileError, match="not a streamrec reranker.*feature_names"):
        Scorer.load(bare, features)


def test_missing_feature_is_named(features: tuple[str, ...], student_onnx: Path) -> None:
    with pytest.raises(FeatureSpecMismatch, match="missing from the model: item_age"):
        Scorer.load(student_onnx, (*features, "item_age"))


def test_extra_feature_is_named(features: tuple[str, ...], student_onnx: Path) -> None:
    with pytest.raises(FeatureSpecMismatch, match="extra in the model: cold"):
        Scorer.load(student_onnx, features[:-1])


def test_reordered_features_are_named(features: tuple[str, ...], student_onnx: Path) -> None:
    swapped = (features[1], features[0], *features[2:])
    with pytest.raises(
        FeatureSpecMismatch,
        match="reordered: position 0 is 'retrieval_score' in the model but 'recent_sim_max'",
    ):
        Scorer.load(student_onnx, swapped)


def test_unknown_device_is_refused(features: tuple[str, ...], student_onnx: Path) -> None:
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        Scorer.load(student_onnx, features, device="tpu")


@pytest.mark.gpu
def test_cuda_provider_scores_through_io_binding(
    features: tuple[str, ...], student_onnx: Path, student: Student, rows: np.ndarray
) -> None:
    if CUDA not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA execution provider on this machine")
    scorer = Scorer.load(student_onnx, features, device="cuda")
    assert scorer.provider == CUDA
    with torch.no_grad():
        want = student(torch.from_numpy(rows)).numpy()
    np.testing.assert_allclose(scorer.score(rows), want, atol=1e-4)
