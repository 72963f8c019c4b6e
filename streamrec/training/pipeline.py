"""One ``streamrec train`` run, start to finish (see the package doc for the why).

1. read the training file; hold out its last ``holdout_frac`` (by time) for the report;
2. item embeddings on the learning part → ``item_vectors.npz`` and the ``index/``;
3. replay the whole file through the engine core (retrieval order, no reranker), logging
   ranking groups at sampled learning events and sampled held-out events; the replay's
   recently-popular counts at the end → ``popular.msgpack`` (workers seed cold users' lists)
   and the stream's co-visitation → ``covis.npz`` (seeds the engine's: the ``covis``
   feature, kept from the start of the replay too, and the co-visitation ranker);
4. teacher on hard labels; student distilled from it; both keep their best validation epoch;
5. export the student (fp32 + int8) and the teacher to ONNX, each parity-checked;
6. offline quality on the held-out groups (the students through the real run-time
   :class:`Scorer`), latency at 200 candidates, the gate;
7. SASRec (unless ``train_sasrec_enabled`` is off) on the whole file, validated on its
   held-out tail → ``sasrec.onnx``, ``sasrec.json`` (the evaluation's sequence baseline);
   then ``report.json``, ``manifest.json``.

Seeded end to end: one compute thread (deterministic CPU kernels), seeded samplers.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch
from rich.progress import Progress
from threadpoolctl import threadpool_limits

from streamrec.config import Settings
from streamrec.data.files import sha256_file, tracker
from streamrec.index import CandidateIndex, build_index
from streamrec.index.vectors import save_vectors
from streamrec.models.distill import (
    fit_student,
    fit_teacher,
    steps_per_fit,
    teacher_scores,
)
from streamrec.models.embeddings import train_item_embeddings
from streamrec.models.export import (
    check_parity,
    export_onnx,
    onnx_session,
    quantize_int8,
    write_metadata,
)
from streamrec.models.metadata import ModelMetadata
from streamrec.models.metrics import ndcg_hr_at_k, retrieval_order_scores
from streamrec.models.ranking_data import RankingGroups
from streamrec.models.scorer import Scorer
from streamrec.models.student import Student
from streamrec.models.teacher import Teacher
from streamrec.streams.core.artifacts import Artifacts
from streamrec.streams.core.config import EngineConfig
from streamrec.streams.core.covis import CoVisitation
from streamrec.streams.core.engine import Engine
from streamrec.streams.core.features import FEATURE_NAMES
from streamrec.streams.core.loader import covis_params, rule_of
from streamrec.streams.core.popular import Popular
from streamrec.training.config import LATENCY_CANDIDATES, TrainingConfig
from streamrec.training.examples import GroupRequest, replay_and_log
from streamrec.training.latency import Latency, speedup, time_calls
from streamrec.training.report import gate_checks
from streamrec.training.sasrec import train_sasrec
from streamrec.training.stream import TrainingStream

VALID_FRAC = 0.1  # latest share of the learning groups that picks each model's best epoch


class TrainingError(RuntimeError):
    """The training data cannot produce a reranker (too few usable events, ...)."""


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

    t0 = time.perf_counter()
    learn, held_out, popular = _log_groups(stream, index, engine_config, item_ids, config, progress)
    popular.save(out.popular)  # workers seed cold users' lists from it
    # and their co-visitation (the `covis` feature; the ranker when covis_weight > 0): as
    # from_events counts it, in the engine's micro-batches (the replay's single-event
    # batches evict a full row's weakest pairs in another order)
    CoVisitation.from_events(stream.events, **covis_params(engine_config)).save(out.covis)
    clock["replay_s"] = time.perf_counter() - t0
    n_valid = max(1, int(len(learn) * VALID_FRAC))
    train_groups = learn.subset(np.arange(len(learn) - n_valid))
    valid_groups = learn.subset(np.arange(len(learn) - n_valid, len(learn)))
    train_groups = train_groups.subset(_useful(train_groups))

    t0 = time.perf_counter()
    fit_steps = steps_per_fit(len(train_groups), config.fit)
    teacher = fit_teacher(
        train_groups,
        valid_groups,
        vectors,
        config.teacher,
        config.fit,
        tracker(progress, "training teacher", fit_steps),
    )
    clock["teacher_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    soft = teacher_scores(teacher, train_groups, vectors)
    student = fit_student(
        train_groups,
        valid_groups,
        soft,
        config.student,
        config.fit,
        tracker(progress, "distilling student", fit_steps),
    )
    clock["student_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model_version = f"{data_sha[:12]}-s{config.seed}"
    metadata = ModelMetadata(FEATURE_NAMES, model_version, data_sha)
    probe = _probe(held_out if len(held_out) else learn, vectors)
    parity = _export(out, student, teacher, probe, metadata)
    clock["export_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    fp32 = Scorer.load(out.reranker, FEATURE_NAMES, device="cpu")
    int8 = Scorer.load(out.reranker_int8, FEATURE_NAMES, device="cpu")
    quality = _quality(held_out, teacher, vectors, fp32, int8)
    latency, faster = _latency(probe, teacher, out.teacher, fp32, int8, config, progress)
    clock["evaluate_s"] = time.perf_counter() - t0

    metrics = {f"{model}.{k}": v for model, q in quality.items() for k, v in q.items()}
    metrics.update({f"latency.{m}.p99_ms": v["p99_ms"] for m, v in latency.items()})
    final = ModelMetadata(FEATURE_NAMES, model_version, data_sha, metrics)
    for path in (out.reranker, out.reranker_int8):
        write_metadata(path, final)
    checks = gate_checks(
        quality, faster, min_quality=config.gate_quality, min_speedup=config.gate_speedup
    )
    gate: dict[str, Any] = {
        "passed": all(c.passed for c in checks),
        "checks": [asdict(c) for c in checks],
    }
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
        "groups": {
            "train": len(train_groups),
            "valid": len(valid_groups),
            "eval": len(held_out),
            # slots per group: the engine's longest list (co-visitation's additions included)
            "candidates": int(held_out.mask.shape[1]) if len(held_out) else 0,
            "eval_next_item_retrieved": float(held_out.has_positive().mean())
            if len(held_out)
            else 0.0,
        },
        "quality": quality,
        "latency_candidates": LATENCY_CANDIDATES,
        "latency_ms": latency,
        "speedup_teacher_onnx_over_student": round(faster, 3),
        "parity_max_abs_diff": parity,
        "gate": gate,
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
        "gate": {
            "passed": gate["passed"],
            "failed": [c for c in gate["checks"] if not c["passed"]],
        },
    }
    out.manifest.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return report


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


def _log_groups(
    stream: TrainingStream,
    index: CandidateIndex,
    engine_config: EngineConfig,
    item_ids: list[str],
    config: TrainingConfig,
    progress: Progress | None,
) -> tuple[RankingGroups, RankingGroups, Popular]:
    """Replay everything through a fresh engine (retrieval order) and log both samples;
    also returns the engine's recently-popular counts at the end of the stream. It keeps
    co-visitation (from empty, read as of each logged event) whatever ``covis_weight``: the
    logged features include the ``covis`` feature the trained rerankers read
    (``ranking.uses_covis``)."""
    rng = np.random.default_rng(config.seed)
    n = len(stream.events)
    learn_pos = np.sort(rng.choice(stream.split, min(config.examples, stream.split), replace=False))
    held = n - stream.split
    eval_pos = stream.split + np.sort(
        rng.choice(held, min(config.eval_events, held), replace=False)
    )
    engine = Engine(
        index,
        None,
        rule_of(engine_config),
        Popular(engine_config.popular_half_life_s, engine_config.popular_top),
        engine_config,
        clock=lambda: 0,
        covis=CoVisitation(**covis_params(engine_config)),
    )
    learn, held_out = replay_and_log(
        engine,
        stream.events,
        {item: row for row, item in enumerate(item_ids)},
        [
            GroupRequest(learn_pos, config.label_horizon, stream.split),
            GroupRequest(eval_pos, 1, n),  # held out: the very next item only
        ],
        seq_len=config.seq_len,
        candidates=engine.max_candidates,
        advance=tracker(progress, "replaying through the engine", n),
    )
    if len(learn) < 20 or not learn.has_positive().any():
        raise TrainingError(
            f"only {len(learn)} personalized training events with "
            f"{int(learn.has_positive().sum())} retrieved next items: too little to learn from"
        )
    return learn, held_out, engine.popular


def _useful(groups: RankingGroups) -> np.ndarray:
    """Training groups that carry a label (some next item was retrieved): the listwise
    loss has nothing to learn from the others."""
    return np.flatnonzero(groups.has_positive())


def _probe(groups: RankingGroups, vectors: np.ndarray) -> dict[str, torch.Tensor]:
    """Teacher inputs for one event padded to ``LATENCY_CANDIDATES`` (parity and latency)."""
    row = int(np.argmax(groups.mask.sum(axis=1)))
    take = np.resize(np.flatnonzero(groups.mask[row]), LATENCY_CANDIDATES)
    table = torch.from_numpy(vectors)
    return {
        "features": torch.from_numpy(groups.features[row, take][None]),
        "items": table[torch.from_numpy(groups.items[row, take])][None],
        "seq": table[torch.from_numpy(groups.seq[row])][None],
        "seq_weight": torch.from_numpy(groups.seq_weight[row][None]),
    }


def _export(
    out: Artifacts,
    student: Student,
    teacher: Teacher,
    probe: dict[str, torch.Tensor],
    metadata: ModelMetadata,
) -> dict[str, float]:
    """Write the three ONNX files; the fp32 ones must pass the parity check."""
    rows = {"features": probe["features"][0]}
    export_onnx(student, rows, out.reranker, metadata)
    student_diff = check_parity(student, rows, out.reranker)
    quantize_int8(out.reranker, out.reranker_int8, metadata)
    export_onnx(teacher, probe, out.teacher, dynamic_axes=Teacher.ONNX_AXES)
    teacher_diff = check_parity(teacher, probe, out.teacher)
    return {"student_fp32": student_diff, "teacher": teacher_diff}


def _quality(
    groups: RankingGroups,
    teacher: Teacher,
    vectors: np.ndarray,
    fp32: Scorer,
    int8: Scorer,
) -> dict[str, dict[str, float]]:
    """NDCG@10 / HR@10 of each ranking of the held-out groups; students via ONNX Runtime.
    ``retrieval`` and ``popularity`` rank the candidates by one source's signal alone (the
    search's order; the decayed popular counts the engine serves cold users by)."""
    relevant, mask = groups.gains > 0, groups.mask
    real = groups.features[mask]  # as served: the padded slots' zero rows are never scored

    def student(scorer: Scorer) -> np.ndarray:
        # padding in the call would also skew int8's dynamic activation ranges: the zero
        # rows' activations dwarf the real ones', which then quantize to one value
        out = np.zeros(mask.shape, dtype=np.float32)
        out[mask] = scorer.score(real)
        return out

    scores = {
        "retrieval": retrieval_order_scores(mask),
        "popularity": groups.features[..., FEATURE_NAMES.index("pop_log")],
        "teacher": teacher_scores(teacher, groups, vectors),
        "student_fp32": student(fp32),
        "student_int8": student(int8),
    }
    return {
        name: {k: round(v, 5) for k, v in ndcg_hr_at_k(s, relevant, mask).items()}
        for name, s in scores.items()
    }


def _latency(
    probe: dict[str, torch.Tensor],
    teacher: Teacher,
    teacher_onnx: Path,
    fp32: Scorer,
    int8: Scorer,
    config: TrainingConfig,
    progress: Progress | None,
) -> tuple[dict[str, dict[str, float]], float]:
    """p50/p99 CPU time of one call over ``LATENCY_CANDIDATES`` candidates for each runtime,
    and the ONNX teacher's speed-up over the fp32 student (:func:`speedup`)."""
    runs = config.latency_runs
    advance = tracker(progress, "timing rerankers", runs)
    feeds = {k: v.numpy() for k, v in probe.items()}
    rows = feeds["features"][0]
    session = onnx_session(teacher_onnx)

    def torch_teacher() -> None:
        with torch.inference_mode():
            teacher(**probe)

    calls = {
        "teacher_pytorch": torch_teacher,
        "teacher_onnx": lambda: session.run(None, feeds),
        "student_fp32": lambda: fp32.score(rows),
        "student_int8": lambda: int8.score(rows),
    }
    took = time_calls(calls, runs, advance)
    table = {name: Latency.of(t).as_dict() for name, t in took.items()}
    return table, speedup(took["teacher_onnx"], took["student_fp32"])


def _jsonable(value: Any) -> Any:
    """Dataclass dicts with mapping proxies and tuples, as plain JSON values."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
