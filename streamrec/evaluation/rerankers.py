"""Batch rerankers the evaluator plugs into the engine's rerank hook (``BatchReranker``).

The engine calls ``score_batch(RerankBatch)`` once per micro-batch with every personalized
candidate row, its user snapshot, candidate id and vector, so rerankers that need more than
the student's feature row run inside ``Engine.process`` unchanged:

* :class:`TeacherReranker` — ``teacher.onnx`` (the TransAct-style ranker the student is
  distilled from), fed exactly as training fed it: the feature rows, the candidates'
  vectors and the user's last ``seq_len`` actions (item vectors and action weights, oldest
  first, left-padded). Too slow for serving; here it measures what distillation gives up.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from streamrec.models.scorer import session_options
from streamrec.streams.core.artifacts import Artifacts
from streamrec.streams.core.ranking import RerankBatch


def _pad_rows(batch: RerankBatch) -> tuple[np.ndarray, np.ndarray, int]:
    """Each row's (group, slot) in a ``[groups, width]`` padding of the batch's rows."""
    slot = np.arange(len(batch.owner)) - batch.offsets[batch.owner]
    width = int(np.diff(batch.offsets).max()) if len(batch.owner) else 0
    return batch.owner, slot, width


class TeacherReranker:
    """``teacher.onnx`` as the engine's batch reranker (one ONNX Runtime call per batch)."""

    def __init__(self, path: Path, *, threads: int = 1, model_version: str = "") -> None:
        self.session = ort.InferenceSession(
            str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self.seq_len = int(shapes["seq"][1])
        self.model_version = model_version or f"teacher:{path.name}"
        self.provider = self.session.get_providers()[0]

    @classmethod
    def load(cls, artifacts: Path, rule: str, *, threads: int = 1) -> TeacherReranker:
        """The teacher trained for ``rule`` in an artifacts directory, versioned like its
        student."""
        layout = Artifacts(artifacts).for_rule(rule)
        version = ""
        if layout.manifest.is_file():
            version = json.loads(layout.manifest.read_text(encoding="utf-8"))["model_version"]
        return cls(
            layout.teacher, threads=threads, model_version=f"{version}-teacher" if version else ""
        )

    def score_batch(self, batch: RerankBatch) -> np.ndarray:
        """Teacher logits for every row of the batch, in row order."""
        group, slot, width = _pad_rows(batch)
        n_groups = len(batch.contexts)
        dim = batch.candidate_vectors.shape[1]
        features = np.zeros((n_groups, width, batch.features.shape[1]), np.float32)
        items = np.zeros((n_groups, width, dim), np.float32)
        features[group, slot] = batch.features
        items[group, slot] = batch.candidate_vectors
        seq, seq_weight = self._sequences(batch, dim)
        scores = self.session.run(
            ["score"],
            {"features": features, "items": items, "seq": seq, "seq_weight": seq_weight},
        )[0]
        return np.asarray(scores[group, slot], dtype=np.float32)

    def _sequences(self, batch: RerankBatch, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """The users' last ``seq_len`` actions on known items, newest last, left-padded (as
        training logged them: the ring's tail, minus items without a vector)."""
        tails = [c.history[-self.seq_len :] for c in batch.contexts]
        flat = [item for tail in tails for item, _, _ in tail]
        vectors, found = batch.vectors_of(flat)
        seq = np.zeros((len(tails), self.seq_len, dim), np.float32)
        seq_weight = np.zeros((len(tails), self.seq_len), np.float32)
        at = 0
        for g, tail in enumerate(tails):
            rows = [at + j for j in range(len(tail)) if found[at + j]]
            weights = [batch.action_weights[a] for j, (_, a, _) in enumerate(tail) if found[at + j]]
            at += len(tail)
            if rows:
                seq[g, -len(rows) :] = vectors[rows]
                seq_weight[g, -len(rows) :] = weights
        return seq, seq_weight
