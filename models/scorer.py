"""The run-time reranker: one ONNX Runtime session, one batched call per micro-batch.

A worker scores every candidate of a micro-batch in a single ``score`` call. On a GPU host
(CUDA execution provider present and the device not forced to CPU) inputs and outputs go
through IO binding; otherwise the CPU provider runs with one compute thread, because
workers scale by processes and partitions and two threads on two cores made p99 much
worse (DESIGN.md "Speed").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from streamrec.models.metadata import ModelFileError, ModelMetadata, check_feature_spec

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEVICES = ("auto", "cpu", "gpu", "cuda")  # "gpu" and "cuda" mean the same
# TF32 matmuls (the CUDA provider's default on Ampere and later) keep 10 mantissa bits, which
# moved H200 scores by up to 5e-4 from the CPU's and could reorder near-ties. The reranker is a
# tiny MLP, so full fp32 costs nothing measurable and GPU and CPU rank alike.
CUDA_OPTIONS = {"use_tf32": "0"}


def choose_providers(device: str) -> list[str | tuple[str, dict[str, str]]]:
    """Execution providers for ``device``: CUDA (in fp32) first when asked for or auto and
    present."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {DEVICES}")
    has_cuda = CUDA in ort.get_available_providers()
    if device in ("gpu", "cuda") and not has_cuda:
        raise RuntimeError(
            f"device {device!r} asked for, but onnxruntime has no CUDA execution provider"
        )
    if device != "cpu" and has_cuda:
        return [(CUDA, CUDA_OPTIONS), CPU]
    return [CPU]


def session_options(threads: int) -> ort.SessionOptions:
    """Sequential execution with ``threads`` intra-op threads and one inter-op thread."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # warnings about unused initialisers are noise here
    return opts


class Scorer:
    """Scores ``[n, F]`` float32 feature rows with a reranker exported by ``streamrec train``."""

    def __init__(self, session: ort.InferenceSession, metadata: ModelMetadata) -> None:
        self._session = session
        self.metadata = metadata
        self.feature_names: tuple[str, ...] = metadata.feature_names
        self.model_version: str = metadata.model_version
        self.provider: str = session.get_providers()[0]
        self._input = session.get_inputs()[0].name
        self._output = session.get_outputs()[0].name
        self._binding = session.io_binding() if self.provider == CUDA else None

    @classmethod
    def load(
        cls,
        path: Path | str,
        expected_features: Sequence[str],
        *,
        device: str = "auto",
        threads: int = 1,
    ) -> Scorer:
        """Open ``path`` and refuse it unless its feature spec is exactly ``expected_features``.

        Raises :class:`ModelFileError` for a missing, corrupt or non-streamrec file and
        :class:`FeatureSpecMismatch` naming the missing, extra or reordered features.
        """
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such reranker file")
        providers = choose_providers(device)
        try:
            session = ort.InferenceSession(
                str(path), sess_options=session_options(threads), providers=providers
            )
        except Exception as exc:  # ORT's InvalidProtobuf/Fail/... share no narrower base
            raise ModelFileError(f"{path}: not a loadable ONNX model: {exc}") from exc
        metadata = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map, str(path))
        check_feature_spec(metadata.feature_names, expected_features, str(path))
        inputs = session.get_inputs()
        if len(inputs) != 1 or inputs[0].shape[-1] != len(metadata.feature_names):
            raise ModelFileError(
                f"{path}: expects inputs {[(i.name, i.shape) for i in inputs]}, "
                f"not one [n, {len(metadata.feature_names)}] feature matrix"
            )
        return cls(session, metadata)

    def score(self, features: np.ndarray) -> np.ndarray:
        """One batched call: ``[n, F]`` features to ``[n]`` float32 scores (higher is better)."""
        x = np.ascontiguousarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(
                f"features must be [n, {len(self.feature_names)}], got shape {features.shape}"
            )
        if x.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        out: Any
        if self._binding is not None:
            self._binding.bind_cpu_input(self._input, x)
            self._binding.bind_output(self._output, "cpu")
            self._session.run_with_iobinding(self._binding)
            out = self._binding.copy_outputs_to_cpu()[0]
        else:
            out = self._session.run([self._output], {self._input: x})[0]
        return np.asarray(out, dtype=np.float32).reshape(x.shape[0])
