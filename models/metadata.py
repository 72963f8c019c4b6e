"""What a reranker ONNX file says about itself, and checking it against the engine.

The feature spec travels *inside* the model file (ONNX ``metadata_props``), so a worker
can never score features in an order the model was not trained on: the scorer compares
the file's spec with the engine's ``FEATURE_NAMES`` at load time and refuses to start
on any difference. Kept free of torch and onnx so the run-time scorer can use it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

KEY_FEATURES = "streamrec.feature_names"
KEY_VERSION = "streamrec.model_version"
KEY_DATA_SHA = "streamrec.training_data_sha256"
KEY_METRICS = "streamrec.offline_metrics"


class ModelFileError(ValueError):
    """A reranker file that cannot be used: unreadable, not ONNX, or without a feature spec."""


class FeatureSpecMismatch(ValueError):
    """The model's feature spec differs from the engine's; the message names the difference."""


@dataclass(frozen=True)
class ModelMetadata:
    """The identity of an exported reranker: its inputs' meaning and where it came from."""

    feature_names: tuple[str, ...]
    model_version: str
    training_data_sha256: str
    metrics: Mapping[str, Any] = field(default_factory=dict)

    def to_props(self) -> dict[str, str]:
        """As ONNX ``metadata_props`` (string to string)."""
        return {
            KEY_FEATURES: json.dumps(list(self.feature_names)),
            KEY_VERSION: self.model_version,
            KEY_DATA_SHA: self.training_data_sha256,
            KEY_METRICS: json.dumps(dict(self.metrics), sort_keys=True),
        }

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str) -> ModelMetadata:
        """Read back :meth:`to_props`; ``source`` names the file in errors."""
        missing = [k for k in (KEY_FEATURES, KEY_VERSION) if k not in props]
        if missing:
            raise ModelFileError(
                f"{source}: not a streamrec reranker (metadata lacks {', '.join(missing)})"
            )
        try:
            names = json.loads(props[KEY_FEATURES])
            metrics = json.loads(props.get(KEY_METRICS, "{}"))
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"{source}: unreadable metadata: {exc}") from exc
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ModelFileError(f"{source}: feature spec is not a list of names")
        return cls(
            feature_names=tuple(names),
            model_version=props[KEY_VERSION],
            training_data_sha256=props.get(KEY_DATA_SHA, ""),
            metrics=metrics,
        )


def check_feature_spec(model: Sequence[str], expected: Sequence[str], source: str) -> None:
    """Raise :class:`FeatureSpecMismatch` naming missing, extra or reordered features."""
    model, expected = tuple(model), tuple(expected)
    if model == expected:
        return
    missing = [n for n in expected if n not in model]
    extra = [n for n in model if n not in expected]
    parts = []
    if missing:
        parts.append(f"missing from the model: {', '.join(missing)}")
    if extra:
        parts.append(f"extra in the model: {', '.join(extra)}")
    if not parts and len(model) == len(expected):
        pos = next(i for i, (a, b) in enumerate(zip(model, expected, strict=True)) if a != b)
        parts.append(
            f"reordered: position {pos} is {model[pos]!r} in the model but {expected[pos]!r} "
            "in the engine"
        )
    if len(model) != len(expected):
        parts.append(f"{len(model)} features in the model, {len(expected)} expected")
    raise FeatureSpecMismatch(
        f"{source}: feature spec differs from the engine's: {'; '.join(parts)}"
    )
