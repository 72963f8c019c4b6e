"""One ``streamrec train`` run, start to finish (see the package doc for the why).

1. read the training file; hold out its last ``holdout_frac`` (by time) for the report;
2. item embeddings on the learning part → ``item_vectors.npz`` and the ``index/``;
3-6. per update rule, ``engine_rule`` first then each of ``train_rules``
   (:mod:`.rerankers`, the first rule's files in the directory, the others' in
   ``rules/<rule>/``):

   3. replay the whole file through the engine core (retrieval order, no reranker),
      logging ranking groups at sampled learning events and sampled held-out events;
   4. teacher on hard labels; student distilled from it; both keep their best
      validation epoch;
   5. export the student (fp32 + int8) and the teacher to ONNX, each parity-checked;
   6. offline quality on the held-out groups (the students through the real run-time
      :class:`Scorer`), latency at 200 candidates, the gate;

   then the first replay's recently-popular counts at its end → ``popular.msgpack``
   (workers seed cold users' lists) and the stream's co-visitation → ``covis.npz`` (seeds
   the engine's: the ``covis`` feature, kept from the start of the replay too, and the
   co-visitation ranker);
7. SASRec (unless ``train_sasrec_enabled`` is off) on the whole file, validated on its
   held-out tail → ``sasrec.onnx``, ``sasrec.json`` (the evaluation's sequence baseline);
   then ``report.json``, ``manifest.json``.

Seeded end to end: one compute thread (deterministic CPU kernels), seeded samplers.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import faiss
import torch
from rich.progress import Progress
from threadpoolctl import threadpool_limits

from streamrec.config import Settings
from streamrec.data.files import sha256_file, tracker
from streamrec.index import build_index
from streamrec.index.vectors import save_vectors
from streamrec.models.embeddings import train_item_embeddings
from streamrec.streams.core.artifacts import RULES, Artifacts
from streamrec.streams.core.config import EngineConfig
from streamrec.streams.core.covis import CoVisitation
from streamrec.streams.core.features import FEATURE_NAMES
from streamrec.streams.core.loader import covis_params, rule_of
from streamrec.training.config import TrainingConfig
from streamrec.training.rerankers import RuleModels, fit_rule
from streamrec.training.sasrec import train_sasrec
from streamrec.training.stream import TrainingStream


def make_deterministic(seed: int) -> None:
    """One compute thread everywhere and seeded torch: training is then reproducible.

    Training runs on the CPU, where torch's kernels are deterministic with one thread, so
    ``torch.use_deterministic_algorithms`` (whose non-deterministic ops are CUDA ones) is
    not called: in torch 2.x it imports the compiler stack, 10 s of a one-minute ``--quick``.
    ``test_same_seed_gives_the_same_models`` checks the outcome.
    """
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)


def train(
    events_path: Path,
    out_dir: Path,
    settings: Settings,
    config: TrainingConfig,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline; returns the report (also written to ``out_dir``)."""
    # One BLAS/OpenMP thread: ALS's many small solves ran 6x slower with OpenBLAS's
    # default pool on this shared 2-core machine (41 s vs 6 s on MovieLens-100k).
    with threadpool_limits(limits=1):
        return _train(events_path, out_dir, settings, config, progress)


def _train(
    events_path: Path,
    out_dir: Path,
    settings: Settings,
    config: TrainingConfig,
    progress: Progress | None,
) -> dict[str, Any]:
    make_deterministic(config.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out_dir / RULES, ignore_errors=True)  # no earlier run's rule left to load
    out = Artifacts(out_dir)
    engine_config = EngineConfig.from_settings(settings)
    rule = rule_of(engine_config)
    clock: dict[str, float] = {}
    started = time.perf_counter()

    size = events_path.stat().st_size
    data_sha = sha256_file(events_path, tracker(progress, "hashing events", size))
    stream = TrainingStream.read(events_path, config.holdout_frac)
    clock["read_s"] = time.perf_counter() - started

    t0 = time.perf_counter()
    item_ids, seqs, weights = stream.item_sequences(rule.weight)
    vectors = train_item_embeddings(seqs, weights, len(item_ids), config.embedding)
    save_vectors(out.item_vectors, item_ids, vectors)
    index = build_index(
        item_ids, vectors, kind=settings.index_kind, metric="ip", device="cpu",
        **settings.index_params,
    )  # fmt: skip
    index.save(out.index)
    clock["embeddings_s"] = time.perf_counter() - t0

    model_version = f"{data_sha[:12]}-s{config.seed}"
    rules: dict[str, RuleModels] = {}
    for name in dict.fromkeys([engine_config.rule, *config.rules]):
        layout = out if name == engine_config.rule else Artifacts(out_dir, name)
        rules[name] = fit_rule(
            stream, index, vectors, item_ids, replace(engine_config, rule=name), layout,
            model_version, data_sha, config, progress,
        )  # fmt: skip
    main = rules[engine_config.rule]
    main.popular.save(out.popular)  # workers seed cold users' lists from it
    # and their co-visitation (the `covis` feature; the ranker when covis_weight > 0): as
    # from_events counts it, in the engine's micro-batches (the replay's single-event
    # batches evict a full row's weakest pairs in another order)
    t0 = time.perf_counter()
    CoVisitation.from_events(stream.events, **covis_params(engine_config)).save(out.covis)
    clock.update(main.report["seconds"], covis_s=time.perf_counter() - t0)
    t0 = time.perf_counter()
    sasrec = _sasrec(stream, out, config, progress)
    clock["sasrec_s"] = time.perf_counter() - t0
    clock["total_s"] = time.perf_counter() - started
    report = {
        "model_version": model_version,
        "data": {
            "events_file": str(events_path),
            "sha256": data_sha,
            "events": len(stream.events),
            "learn_events": stream.split,
            "holdout_events": len(stream.events) - stream.split,
            "items_with_vectors": len(item_ids),
        },
        **{k: v for k, v in main.report.items() if k != "seconds"},
        # the other rules' rerankers (rules/<rule>/), each with the same entries
        "rules": {name: r.report for name, r in rules.items() if r is not main},
        "sasrec": sasrec,
        "seconds": {k: round(v, 2) for k, v in clock.items()},
        "config": _jsonable(asdict(config)),
    }
    out.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    manifest = {
        "model_version": model_version,
        "feature_names": list(FEATURE_NAMES),
        "embedding_dim": int(vectors.shape[1]),
        "embedding_method": config.embedding.method,
        "training_data_sha256": data_sha,
        "items": len(item_ids),
        "files": {
            key: path.name
            for key, path in out.files().items()
            if sasrec["trained"] or path not in (out.sasrec, out.sasrec_meta)
        },
        "engine": _jsonable(
            {f.name: getattr(engine_config, f.name) for f in fields(engine_config)}
        ),
        # What workers read before serving (streams/core/loader.py `check_gate`): a model
        # that missed the gate is written, but marked failed with the checks it missed.
        "gate": _verdict(main),
        "rules": {
            name: {"dir": str(Path(RULES) / name), "gate": _verdict(r)}
            for name, r in rules.items()
            if r is not main
        },
    }
    out.manifest.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return report


def _verdict(models: RuleModels) -> dict[str, Any]:
    """A rule's gate as the manifest keeps it: passed, and the checks it missed."""
    gate = models.report["gate"]
    return {"passed": gate["passed"], "failed": [c for c in gate["checks"] if not c["passed"]]}


def _sasrec(
    stream: TrainingStream, out: Artifacts, config: TrainingConfig, progress: Progress | None
) -> dict[str, Any]:
    """Train SASRec on its own torch threads (the report's entry), or say it is off; a
    previous run's SASRec files are removed then, so `evaluate` never loads a stale one."""
    if config.sasrec is None:
        for path in (out.sasrec, out.sasrec_meta):
            path.unlink(missing_ok=True)
        return {"trained": False, "why": "train_sasrec_enabled is off"}
    threads = torch.get_num_threads()
    torch.set_num_threads(config.sasrec_threads)
    try:
        advance = tracker(progress, "training SASRec (epochs)", config.sasrec.max_epochs)
        return train_sasrec(stream.events, stream.split, out, config.sasrec, advance)
    finally:
        torch.set_num_threads(threads)


def _jsonable(value: Any) -> Any:
    """Dataclass dicts with mapping proxies and tuples, as plain JSON values."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
