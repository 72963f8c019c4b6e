"""ONNX export of the rerankers, int8 dynamic quantization, and the parity check.

A model only leaves training as a file that carries its own identity (feature spec,
version, training-data digest, offline metrics in ``metadata_props``) and that ONNX
Runtime provably computes the same function from: :func:`check_parity` fails the export
when PyTorch and ONNX Runtime disagree by more than ``1e-4`` on the same inputs.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

from streamrec.models.metadata import ModelMetadata
from streamrec.models.scorer import session_options

OPSET = 17
PARITY_ATOL = 1e-4
OUTPUT_NAME = "score"


class ParityError(RuntimeError):
    """ONNX Runtime's output differs from PyTorch's beyond the tolerance."""


def export_onnx(
    module: torch.nn.Module,
    inputs: Mapping[str, torch.Tensor],
    path: Path,
    metadata: ModelMetadata | None = None,
    dynamic_axes: Mapping[str, Sequence[int]] | None = None,
) -> Path:
    """Write ``module`` (called with ``inputs`` as keyword arguments, in this order) to ONNX.

    ``dynamic_axes`` names the variable dimensions of each input and of the ``score``
    output; by default dimension 0 of each (the candidate batch). ``metadata`` is stored in
    ``metadata_props`` when given.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(inputs)
    if dynamic_axes is None:
        dynamic_axes = {name: (0,) for name in [*names, OUTPUT_NAME]}
    axes = {name: {d: f"{name}_{d}" for d in dims} for name, dims in dynamic_axes.items()}
    module.eval()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the torch.export one, which
        # needs onnxscript (not a dependency); it exports these plain modules exactly.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        # Shape checks inside nn.MultiheadAttention are traced as constants; the parity
        # check runs other shapes through the exported graph to prove that harmless.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            _KeywordAdapter(module, names),
            tuple(inputs[n] for n in names),
            str(path),
            dynamo=False,
            input_names=names,
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=OPSET,
        )
    if metadata is not None:
        write_metadata(path, metadata)
    return path


class _KeywordAdapter(torch.nn.Module):
    """Calls a module that takes keyword inputs with the exporter's positional ones."""

    def __init__(self, module: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.module = module
        self.names = names

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.module(**dict(zip(self.names, args, strict=True)))


def write_metadata(path: Path, metadata: ModelMetadata) -> None:
    """Replace the streamrec keys of the file's ``metadata_props`` with ``metadata``."""
    model = onnx.load(str(path))
    props = metadata.to_props()
    kept = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "streamrec"
    onnx.save(model, str(path))


def read_metadata(path: Path) -> ModelMetadata:
    """The :class:`ModelMetadata` stored in an exported file."""
    model = onnx.load(str(path), load_external_data=False)
    return ModelMetadata.from_props({p.key: p.value for p in model.metadata_props}, str(path))


def quantize_int8(src: Path, dst: Path, metadata: ModelMetadata) -> Path:
    """Dynamic int8 quantization of the MatMul/Gemm weights (activations stay float).

    ``metadata`` is written again because the quantizer rebuilds the model proto.
    """
    quantizer_log = logging.getLogger()  # the quantizer advises shape pre-processing on the
    level = quantizer_log.level  # root logger; these MLPs have static feature widths
    quantizer_log.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    finally:
        quantizer_log.setLevel(level)
    write_metadata(dst, metadata)
    return dst


def onnx_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU session with the scorer's threading, for parity checks and benchmarks."""
    return ort.InferenceSession(
        str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
    )


def check_parity(
    module: torch.nn.Module,
    inputs: Mapping[str, torch.Tensor],
    path: Path,
    atol: float = PARITY_ATOL,
) -> float:
    """Largest |PyTorch − ONNX Runtime| over ``inputs``; raises :class:`ParityError` > ``atol``."""
    module.eval()
    with torch.no_grad():
        expected = module(**inputs).detach().cpu().numpy().reshape(-1)
    feeds = {name: t.detach().cpu().numpy() for name, t in inputs.items()}
    got = onnx_session(path).run([OUTPUT_NAME], feeds)[0].reshape(-1)
    diff = float(np.max(np.abs(expected - got))) if expected.size else 0.0
    if not diff <= atol:  # also catches NaN
        raise ParityError(
            f"{path}: ONNX Runtime differs from PyTorch by {diff:.3g} (> {atol:g}) "
            f"on {expected.size} scores"
        )
    return diff
