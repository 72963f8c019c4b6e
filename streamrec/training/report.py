"""The training report: offline quality and latency per model, and the gate on them.

The gate is the issue's bar for shipping the student: it keeps >= 97 % of the teacher's
NDCG@10, is >= 5x faster than the teacher served through ONNX Runtime (the fairer, faster
of the teacher's two runtimes) at 200 candidates — the median of per-call ratios of thread
CPU time (:mod:`.latency`), which a busy machine does not move — and the teacher beats
plain retrieval order while the student beats every candidate source ranked alone by its
own signal (retrieval order; popularity order, the decayed counts of the popular source).
A model that misses it is still written, marked failed (the manifest's ``gate``), and
workers refuse to serve it unless told otherwise (``allow_failed_model``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rich.table import Table

#: Quality rows that rank the held-out candidates by one source's own signal, with labels.
SOURCE_ROWS = {"retrieval": "retrieval order", "popularity": "popularity order"}
QUALITY_ROWS = (*SOURCE_ROWS, "teacher", "student_fp32", "student_int8")
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
    speedup: float,
    *,
    min_quality: float,
    min_speedup: float,
    share_interval: tuple[float, float] | None = None,
) -> list[Check]:
    """The gate's conditions on the report's quality table and the student's speed-up over
    the ONNX teacher (median per-call ratio of CPU time, :func:`.latency.speedup`). The
    quality check is on the measured share; ``share_interval`` (its 95 % bootstrap interval
    over the held-out events) is told beside it, not judged, so a reader sees whether a
    miss is within sampling noise."""
    retrieval = quality["retrieval"][NDCG]
    teacher = quality["teacher"][NDCG]
    student = quality["student_fp32"][NDCG]
    share = student / teacher if teacher > 0 else 0.0
    return [
        Check(
            "student keeps the teacher's quality",
            share >= min_quality,
            f"student NDCG@10 {student:.4f} is {_share(share, min_quality)} of the teacher's "
            f"{teacher:.4f}{_interval(share_interval)} (need >= {min_quality:.0%})",
        ),
        Check(
            "student is faster than the teacher",
            speedup >= min_speedup,
            f"teacher (ONNX) / student CPU time per call, median of per-call ratios = "
            f"{speedup:.1f}x (need >= {min_speedup:g}x)",
        ),
        Check(
            "teacher beats retrieval order",
            teacher > retrieval,
            f"teacher NDCG@10 {teacher:.4f} vs retrieval order {retrieval:.4f}",
        ),
        *(
            Check(
                f"student beats {label}",
                student > quality[row][NDCG],
                f"student NDCG@10 {student:.4f} vs {label} {quality[row][NDCG]:.4f}",
            )
            for row, label in SOURCE_ROWS.items()
        ),
    ]


def report_table(report: dict[str, Any], rule: str) -> Table:
    """One rule's part of the report (the report itself for ``engine_rule``, an entry of its
    ``rules`` for the others) as a rich table: one row per model, quality and latency side
    by side."""
    quality, latency = report["quality"], report["latency_ms"]
    n = report["groups"]["eval"]
    table = Table(
        title=f"streamrec train, {rule!r} rule — {n} held-out events, "
        f"{report['latency_candidates']} candidates per latency call, 1 thread, CPU time"
    )
    for column in ("model", "NDCG@10", "HR@10", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "model" else "right")
    rows = [
        *((label, row, None) for row, label in SOURCE_ROWS.items()),
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


def _share(share: float, bar: float) -> str:
    """``share`` as a percentage that never reads as meeting ``bar`` when it does not: a
    share below the bar is cut, not rounded (0.96984 against 0.97 is "96.9%", not "97.0%")."""
    if share >= bar:
        return f"{share:.1%}"
    return f"{math.floor(share * 1000) / 10:.1f}%"


def _interval(interval: tuple[float, float] | None) -> str:
    """`` [95% CI a-b]`` of a share, or nothing."""
    if interval is None:
        return ""
    return f" [95% CI {interval[0]:.1%}-{interval[1]:.1%}]"
