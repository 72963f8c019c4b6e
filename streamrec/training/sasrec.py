"""``streamrec train``'s SASRec step: sequences from the training stream, fit, ONNX export.

SASRec learns from the whole training file: each user's events before the run's held-out
tail are training targets, the tail (the file's last ``holdout_frac`` by time, the same
events the reranker report holds out) is the validation split whose HR@10 / NDCG@10 pick
the epoch kept. The exported file scores the whole catalog after a window of the user's
last ``seq_len`` events and must match PyTorch within the parity tolerance.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from streamrec.data.files import Advance
from streamrec.models.export import check_parity, export_onnx
from streamrec.models.sasrec import FitResult, LastScores, SasrecConfig, action_code, fit_sasrec
from streamrec.models.sasrec_scorer import left_pad
from streamrec.streams.core.artifacts import Artifacts
from streamrec.streams.wire import Event

ONNX_AXES = {"items": (0,), "actions": (0,), "score": (0,)}


def user_sequences(
    events: list[Event], split: int
) -> tuple[list[str], list[np.ndarray], list[np.ndarray], list[int]]:
    """Item ids by row (first-seen order; row r + 1 is ``ids[r]``), each user's item rows
    and action codes in time order, and where each user's held-out events start."""
    rows: dict[str, int] = {}
    seqs: dict[str, list[int]] = {}
    acts: dict[str, list[int]] = {}
    cut: dict[str, int] = {}
    for pos, event in enumerate(events):
        row = rows.setdefault(event.item_id, len(rows) + 1)
        mine = seqs.setdefault(event.user_id, [])
        if pos >= split:
            cut.setdefault(event.user_id, len(mine))
        mine.append(row)
        acts.setdefault(event.user_id, []).append(action_code(event.action))
    users = list(seqs)
    return (
        list(rows),
        [np.asarray(seqs[u], dtype=np.int64) for u in users],
        [np.asarray(acts[u], dtype=np.int64) for u in users],
        [cut.get(u, len(seqs[u])) for u in users],
    )


def train_sasrec(
    events: list[Event],
    split: int,
    out: Artifacts,
    config: SasrecConfig,
    advance: Advance | None = None,
) -> dict[str, Any]:
    """Fit, export (parity-checked) and describe SASRec; returns the report's entry."""
    item_ids, items, actions, valid_from = user_sequences(events, split)
    result = fit_sasrec(items, actions, valid_from, len(item_ids), config, advance)
    probe = _probe(items, actions, config.seq_len)
    head = LastScores(result.model)
    export_onnx(head, probe, out.sasrec, dynamic_axes=ONNX_AXES)
    parity = check_parity(head, probe, out.sasrec)
    entry = _entry(result, config, parity, len(item_ids))
    meta = {**entry, "seq_len": config.seq_len, "item_ids": item_ids}
    out.sasrec_meta.write_text(json.dumps(meta) + "\n", encoding="utf-8")
    return entry


def _probe(
    items: list[np.ndarray], actions: list[np.ndarray], seq_len: int
) -> dict[str, torch.Tensor]:
    """A batch of real windows for export and parity: longest, shortest and a padded one."""
    order = np.argsort([len(s) for s in items])
    picks = [int(order[-1]), int(order[0]), int(order[len(order) // 2])]
    return {
        "items": torch.from_numpy(np.stack([left_pad(items[u], seq_len) for u in picks])),
        "actions": torch.from_numpy(np.stack([left_pad(actions[u], seq_len) for u in picks])),
    }


def _entry(result: FitResult, config: SasrecConfig, parity: float, n_items: int) -> dict[str, Any]:
    best = result.curve[result.best_epoch - 1]
    return {
        "trained": True,
        "items": n_items,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.curve),
        "valid": {"hr@10": round(best["hr@10"], 5), "ndcg@10": round(best["ndcg@10"], 5)},
        "curve": result.curve,
        "train_seconds": round(result.seconds, 1),
        "parity_max_abs_diff": parity,
        "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
    }
