"""ONNX export: parity with PyTorch is checked, and a differing file fails the export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamrec.models.export import ParityError, check_parity, export_onnx, read_metadata
from streamrec.models.metadata import ModelMetadata
from streamrec.models.student import Student
from streamrec.models.teacher import Teacher, TeacherConfig


def test_student_export_is_within_parity(
    student_onnx: Path, student: Student, rows: np.ndarray
) -> None:
    diff = check_parity(student, {"features": torch.from_numpy(rows)}, student_onnx)
    assert diff <= 1e-4


def test_parity_check_fails_when_onnx_computes_something_else(
    student_onnx: Path, student: Student, rows: np.ndarray
) -> None:
    with torch.no_grad():
        student.mlp[-1].bias += 0.01  # the file still holds the old bias
    with pytest.raises(ParityError, match="differs from PyTorch by 0.01"):
        check_parity(student, {"features": torch.from_numpy(rows)}, student_onnx)


def test_teacher_exports_with_dynamic_groups_and_candidates(tmp_path: Path) -> None:
    torch.manual_seed(0)
    teacher = Teacher(5, 8, 4, TeacherConfig(hidden=8, heads=2, mlp=16)).eval()

    def inputs(groups: int, cands: int) -> dict[str, torch.Tensor]:
        weight = torch.ones(groups, 4)
        weight[0, :2] = 0  # padding in the first user's history
        return {
            "features": torch.randn(groups, cands, 5),
            "items": torch.randn(groups, cands, 8),
            "seq": torch.randn(groups, 4, 8),
            "seq_weight": weight,
        }

    path = export_onnx(
        teacher, inputs(2, 7), tmp_path / "teacher.onnx", dynamic_axes=Teacher.ONNX_AXES
    )
    assert check_parity(teacher, inputs(1, 200), path) <= 1e-4
    assert check_parity(teacher, inputs(3, 5), path) <= 1e-4


def test_metadata_is_readable_without_onnxruntime(
    student_onnx: Path, metadata: ModelMetadata
) -> None:
    assert read_metadata(student_onnx) == metadata
