"""The artifacts directory's layout: every file ``streamrec train`` writes and the worker,
the evaluator, the demo and the benchmarks read, named in this one place.

It lives in ``streams/core/`` because the engine loader (the worker's reader) needs it in
a worker-only install (no torch) and the root package (training, evaluation, CLI) sits on
top of ``streams/``; ``models/`` and ``index/`` import nothing of ``streams/``, so they take
the paths from their callers (``SasrecScorer.load(model, meta)``, ``load_index(dir)``).
The names on disk are those of every earlier ``streamrec train``: old directories load.
"""

from __future__ import annotations

from pathlib import Path

#: The student's file: what the ``engine_reranker`` setting names by default.
RERANKER = "reranker.onnx"


class Artifacts:
    """The paths of one artifacts directory (nothing is read or checked here)."""

    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)
        #: Item ids and their embeddings (``streamrec.index.vectors``' format).
        self.item_vectors = self.dir / "item_vectors.npz"
        #: The FAISS candidate index, a folder (``streamrec.index.persist``'s files).
        self.index = self.dir / "index"
        #: The distilled student reranker, fp32 and int8 (``engine_reranker`` names one).
        self.reranker = self.dir / RERANKER
        self.reranker_int8 = self.dir / "reranker.int8.onnx"
        #: The teacher reranker the student was distilled from.
        self.teacher = self.dir / "teacher.onnx"
        #: Recently-popular counts at the end of the training stream (``Popular.save``).
        self.popular = self.dir / "popular.msgpack"
        #: Co-visitation statistics of the training stream (``CoVisitation.save``).
        self.covis = self.dir / "covis.npz"
        #: ``streamrec train``'s report: quality, latency, the gate's checks.
        self.report = self.dir / "report.json"
        #: The trained SASRec: ONNX scorer and its item-id map / window length.
        self.sasrec = self.dir / "sasrec.onnx"
        self.sasrec_meta = self.dir / "sasrec.json"
        #: What ``streamrec train`` wrote, its gate's verdict included; lists the files
        #: above under ``files`` by the keys of :meth:`files`.
        self.manifest = self.dir / "manifest.json"

    def files(self) -> dict[str, Path]:
        """Every path but the manifest's, by its key in the manifest's ``files``."""
        return {k: v for k, v in vars(self).items() if k not in ("dir", "manifest")}

    def model(self, name: str) -> Path | None:
        """The reranker file a setting names inside the directory (``engine_reranker``, an
        A/B variant's); None for an empty name, which means retrieval order."""
        return self.dir / name if name else None

    def __repr__(self) -> str:
        return f"Artifacts({str(self.dir)!r})"
