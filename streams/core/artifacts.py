"""The artifacts directory's layout: every file ``streamrec train`` writes and the worker,
the evaluator, the demo and the benchmarks read, named in this one place.

It lives in ``streams/core/`` because the engine loader (the worker's reader) needs it in
a worker-only install (no torch) and the root package (training, evaluation, CLI) sits on
top of ``streams/``; ``models/`` and ``index/`` import nothing of ``streams/``, so they take
the paths from their callers (``SasrecScorer.load(model, meta)``, ``load_index(dir)``).
The names on disk are those of every earlier ``streamrec train``: old directories load.

**One set of rerankers per update rule.** A reranker learns from its rule's candidates and
features, so it serves with that rule only (``loader.check_gate``). The directory's own
``reranker.onnx``, ``reranker.int8.onnx`` and ``teacher.onnx`` are those of the rule the
manifest's ``engine.rule`` names; ``streamrec train`` with ``train_rules`` writes every other
rule's three files to ``rules/<rule>/`` (:meth:`Artifacts.for_rule`).
"""

from __future__ import annotations

from pathlib import Path

#: The student's file: what the ``engine_reranker`` setting names by default.
RERANKER = "reranker.onnx"
#: The folder of the rerankers trained for the other update rules, one sub-folder each.
RULES = "rules"


class Artifacts:
    """The paths of one artifacts directory (nothing is read here; :meth:`for_rule` only
    looks whether a folder exists)."""

    def __init__(self, directory: Path | str, rule: str | None = None) -> None:
        self.dir = Path(directory)
        #: Where the rerankers live: ``rules/<rule>/`` when ``rule`` is given.
        self.models = self.dir / RULES / rule if rule else self.dir
        #: Item ids and their embeddings (``streamrec.index.vectors``' format).
        self.item_vectors = self.dir / "item_vectors.npz"
        #: The FAISS candidate index, a folder (``streamrec.index.persist``'s files).
        self.index = self.dir / "index"
        #: The distilled student reranker, fp32 and int8 (``engine_reranker`` names one).
        self.reranker = self.models / RERANKER
        self.reranker_int8 = self.models / "reranker.int8.onnx"
        #: The teacher reranker the student was distilled from.
        self.teacher = self.models / "teacher.onnx"
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
        return {k: v for k, v in vars(self).items() if k not in ("dir", "models", "manifest")}

    def for_rule(self, rule: str) -> Artifacts:
        """The layout whose rerankers are those trained for ``rule``: ``rules/<rule>/`` when
        that folder is there, else the directory's own (trained for ``engine.rule``; whether
        they may serve ``rule`` is the loader's check, not the layout's)."""
        return Artifacts(self.dir, rule) if (self.dir / RULES / rule).is_dir() else self

    def model(self, name: str) -> Path | None:
        """The reranker file a setting names among this layout's rerankers
        (``engine_reranker``, an A/B variant's); None for an empty name, which means
        retrieval order."""
        return self.models / name if name else None

    def __repr__(self) -> str:
        return f"Artifacts({str(self.dir)!r})"
