"""Reranker latency per device: the ONNX ``Scorer`` on the CPU (one compute thread, as a
worker runs it) and, where onnxruntime has the CUDA execution provider, on the GPU, at the
candidate counts a worker scores in one call (200: one event; 2000: a micro-batch of ten).

Figures, not asserts: one JSON line per (device, batch) with p50/p99 wall-clock milliseconds
per ``score`` call over the same feature rows, the devices taking turns call by call (so a noisy
neighbour hits both alike). Without ``--model`` a seeded student of the default shape is
exported to a temporary file; pass a trained ``reranker.onnx`` to time that one.

Run: ``python -m loadtest.bench_scorer`` (``--batches``, ``--runs``, ``--model``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from streamrec.models.scorer import CUDA, Scorer
from streamrec.streams.core.features import FEATURE_NAMES
from streamrec.training.latency import Latency, time_calls


def seeded_student(directory: Path) -> Path:
    """A default-shape student (random weights, seed 0) exported with the engine's features."""
    import torch

    from streamrec.models.export import export_onnx
    from streamrec.models.metadata import ModelMetadata
    from streamrec.models.student import Student, StudentConfig

    torch.manual_seed(0)
    rows = np.random.default_rng(0).normal(size=(256, len(FEATURE_NAMES))).astype(np.float32)
    student = Student(len(FEATURE_NAMES), StudentConfig())
    student.set_normalisation(rows)
    metadata = ModelMetadata(
        feature_names=FEATURE_NAMES,
        model_version="bench-seeded",
        training_data_sha256="0" * 64,
        metrics={},
    )
    return export_onnx(
        student.eval(), {"features": torch.from_numpy(rows)}, directory / "s.onnx", metadata
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="reranker ONNX file (default: seeded student)")
    parser.add_argument("--batches", default="200,2000", help="comma-separated candidate counts")
    parser.add_argument("--runs", type=int, default=500, help="timed calls per device and batch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or seeded_student(Path(tmp))
        devices = ["cpu"] + (["gpu"] if CUDA in ort.get_available_providers() else [])
        scorers = {d: Scorer.load(model, FEATURE_NAMES, device=d, threads=1) for d in devices}
        rng = np.random.default_rng(1)
        for batch in (int(b) for b in args.batches.split(",")):
            rows = rng.normal(size=(batch, len(FEATURE_NAMES))).astype(np.float32)
            calls = {d: (lambda s=s, x=rows: s.score(x)) for d, s in scorers.items()}
            for device, took in time_calls(calls, args.runs, clock=time.perf_counter).items():
                line = {"device": device, "provider": scorers[device].provider, "batch": batch}
                line.update(Latency.of(took).as_dict(), runs=args.runs)
                line["model"] = str(args.model or "seeded")
                print(json.dumps(line))
        if "gpu" in scorers:
            rows = rng.normal(size=(2000, len(FEATURE_NAMES))).astype(np.float32)
            gpu, cpu = scorers["gpu"].score(rows), scorers["cpu"].score(rows)
            gap = float(np.abs(gpu - cpu).max())
            scale = float(np.abs(cpu).max())
            diff = {"max_abs_diff_gpu_vs_cpu": gap, "max_abs_score": scale, "batch": 2000}
            print(json.dumps(diff))


if __name__ == "__main__":
    main()
