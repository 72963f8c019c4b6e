"""The run-time side of SASRec: its ONNX file, its item-id map, and ranking helpers.

Torch-free (onnxruntime and numpy only), so the evaluator and any worker-side code can
load a trained SASRec without the ``train`` extra. ``streamrec train`` writes two files
into the artifacts (named by ``streamrec.streams.core.artifacts``): ``sasrec.onnx``
(inputs ``items`` and ``actions``, int64 ``[B, L]`` left-padded; output ``score``
``[B, n_items]`` over the whole catalog) and ``sasrec.json`` (item ids by row, window
length, the validation curve and training time).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from streamrec.models.scorer import session_options

PAD, CLICK, SAVE = 0, 1, 2  # action codes; item row 0 is padding too


def left_pad(values: np.ndarray, length: int) -> np.ndarray:
    """The last ``length`` values, left-padded with :data:`PAD` (int64)."""
    out = np.zeros(length, dtype=np.int64)
    tail = np.asarray(values, dtype=np.int64)[-length:] if length else values[:0]
    if len(tail):
        out[length - len(tail) :] = tail
    return out


def ranks_of_targets(
    scores: np.ndarray, targets: np.ndarray, seen: Sequence[np.ndarray]
) -> np.ndarray:
    """0-based rank of each target row among the rows the user had not seen (ties by row;
    a target the user had seen ranks last: a miss). ``scores[:, r - 1]`` scores row ``r``."""
    n = scores.shape[1]
    out = np.empty(len(targets), dtype=np.int64)
    for i, (row, target) in enumerate(zip(scores, targets.tolist(), strict=True)):
        mask = np.zeros(n, dtype=bool)
        mask[np.asarray(seen[i], dtype=np.int64) - 1] = True
        if mask[target - 1]:
            out[i] = n
            continue
        t = row[target - 1]
        above = (row > t) & ~mask
        tied = (row[: target - 1] == t) & ~mask[: target - 1]
        out[i] = int(above.sum() + tied.sum())
    return out


class SasrecFileError(ValueError):
    """The artifacts' SASRec files are missing, unreadable or disagree with each other."""


@dataclass
class SasrecScorer:
    """One ONNX Runtime session scoring whole batches of users' windows."""

    session: ort.InferenceSession
    item_ids: list[str]  # row r + 1 is item_ids[r]
    seq_len: int
    info: dict[str, Any]  # the rest of sasrec.json (curve, seconds, config)

    @classmethod
    def load(cls, model: Path, meta: Path, threads: int = 1) -> SasrecScorer:
        """Open a SASRec from its ONNX file and its ``sasrec.json``; :class:`SasrecFileError`
        when either is missing or bad."""
        if not model.is_file() or not meta.is_file():
            raise SasrecFileError(
                f"no trained SASRec ({model} and {meta}; "
                "`streamrec train` writes them unless train_sasrec_enabled is off)"
            )
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
            item_ids = [str(i) for i in info.pop("item_ids")]
            seq_len = int(info["seq_len"])
            session = ort.InferenceSession(
                str(model),
                sess_options=session_options(threads),
                providers=["CPUExecutionProvider"],
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SasrecFileError(f"{model.parent}: unreadable SASRec files: {exc}") from exc
        except Exception as exc:  # ORT's load errors share no narrower base
            raise SasrecFileError(f"{model}: not a loadable ONNX model: {exc}") from exc
        return cls(session, item_ids, seq_len, info)

    def scores(self, items: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """``[B, n_items]`` float32 scores (column r scores row r + 1) after each window."""
        if len(items) == 0:
            return np.zeros((0, len(self.item_ids)), dtype=np.float32)
        feeds = {
            "items": np.ascontiguousarray(items, dtype=np.int64),
            "actions": np.ascontiguousarray(actions, dtype=np.int64),
        }
        return np.asarray(self.session.run(None, feeds)[0], dtype=np.float32)
