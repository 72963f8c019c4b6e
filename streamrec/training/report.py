"""The training report: offline quality and latency per model, and the gate on them.

The gate is the issue's bar for shipping the student: it keeps >= 97 % of the teacher's
NDCG@10, is >= 5x faster at p99 (200 candidates) than the teacher served through ONNX
Runtime (the fairer, faster of the teacher's two runtimes), and both rerankers beat plain
retrieval order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.table import Table

QUALITY_ROWS = ("retrieval", "teacher", "student_fp32", "student_int8")
LATENCY_ROWS = ("teacher_pytorch", "teacher_onnx", "student_fp32", "student_int8")
NDCG = "ndcg@10"
HR = "hr@10"


@dataclass(frozen=True)
class Check:
    """One gate condition and whether it held."""

    name: str
    passed: bool
    detail: str


def gate_checks(
    quality: dict[str, dict[str, float]],
    latency: dict[str, dict[str, float]],
    *,
    min_quality: float,
    min_speedup: float,
) -> list[Check]:
    """The gate's conditions on the report's quality and latency tables."""
    retrieval = quality["retrieval"][NDCG]
    teacher = quality["teacher"][NDCG]
    student = quality["student_fp32"][NDCG]
    t_p99 = latency["teacher_onnx"]["p99_ms"]
    s_p99 = latency["student_fp32"]["p99_ms"]
    speedup = t_p99 / s_p99 if s_p99 > 0 else float("inf")
    share = student / teacher if teacher > 0 else 0.0
    return [
        Check(
            "student keeps the teacher's quality",
            share >= min_quality,
            f"student NDCG@10 {student:.4f} is {share:.1%} of the teacher's {teacher:.4f} "
            f"(need >= {min_quality:.0%})",
        ),
        Check(
            "student is faster at p99",
            speedup >= min_speedup,
            f"teacher (ONNX) p99 {t_p99:.3f} ms / student p99 {s_p99:.3f} ms = {speedup:.1f}x "
            f"(need >= {min_speedup:g}x)",
        ),
        Check(
            "teacher beats retrieval order",
            teacher > retrieval,
            f"teacher NDCG@10 {teacher:.4f} vs retrieval order {retrieval:.4f}",
        ),
        Check(
            "student beats retrieval order",
            student > retrieval,
            f"student NDCG@10 {student:.4f} vs retrieval order {retrieval:.4f}",
        ),
    ]


def report_table(report: dict[str, Any]) -> Table:
    """The report as a rich table: one row per model, quality and latency side by side."""
    quality, latency = report["quality"], report["latency_ms"]
    n = report["groups"]["eval"]
    table = Table(
        title=f"streamrec train — {n} held-out events, {report['latency_candidates']} candidates "
        "per latency call, 1 thread"
    )
    for column in ("model", "NDCG@10", "HR@10", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "model" else "right")
    rows = [
        ("retrieval order", "retrieval", None),
        ("teacher (PyTorch)", "teacher", "teacher_pytorch"),
        ("teacher (ONNX)", "teacher", "teacher_onnx"),
        ("student fp32 (ONNX)", "student_fp32", "student_fp32"),
        ("student int8 (ONNX)", "student_int8", "student_int8"),
    ]
    for label, q, lat in rows:
        t = latency.get(lat) if lat else None
        table.add_row(
            label,
            f"{quality[q][NDCG]:.4f}",
            f"{quality[q][HR]:.4f}",
            f"{t['p50_ms']:.3f}" if t else "—",
            f"{t['p99_ms']:.3f}" if t else "—",
        )
    return table
