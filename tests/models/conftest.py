"""Small real models for the models tests: a seeded student exported to ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamrec.models.export import export_onnx
from streamrec.models.metadata import ModelMetadata
from streamrec.models.student import Student, StudentConfig

FEATURES = ("retrieval_score", "recent_sim_max", "pop_log", "user_events_log", "cold")


@pytest.fixture
def features() -> tuple[str, ...]:
    """The feature spec the test models are exported with (error messages name these)."""
    return FEATURES


@pytest.fixture
def student() -> Student:
    """A tiny seeded student with input normalisation set from random rows."""
    torch.manual_seed(0)
    model = Student(len(FEATURES), StudentConfig(hidden=(8, 4)))
    model.set_normalisation(np.random.default_rng(0).random((50, len(FEATURES)), np.float32))
    return model.eval()


@pytest.fixture
def metadata() -> ModelMetadata:
    return ModelMetadata(
        feature_names=FEATURES,
        model_version="test-1",
        training_data_sha256="ab" * 32,
        metrics={"ndcg@10": 0.25, "hr@10": 0.5},
    )


@pytest.fixture
def rows() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(200, len(FEATURES))).astype(np.float32)


@pytest.fixture
def student_onnx(
    tmp_path: Path, student: Student, metadata: ModelMetadata, rows: np.ndarray
) -> Path:
    """The student exported with metadata."""
    return export_onnx(
        student, {"features": torch.from_numpy(rows)}, tmp_path / "reranker.onnx", metadata
    )
