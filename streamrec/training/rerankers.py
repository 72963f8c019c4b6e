"""One update rule's rerankers: steps 3-6 of ``streamrec train`` (see :mod:`.pipeline`).

A reranker learns from its rule's candidates and features (``query_weight`` and
``user_interests`` never vary under ``decayed``), so each rule the run trains for gets its
own replay, teacher, student, ONNX files, held-out quality, latency and gate:
:func:`fit_rule`. The first rule's files are the directory's own; ``train_rules`` adds the
others' under ``rules/<rule>/`` (:meth:`Artifacts.for_rule`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from streamrec.data.files import tracker
from streamrec.evaluation.bootstrap import PairedBootstrap
from streamrec.index import CandidateIndex
from streamrec.models.distill import fit_student, fit_teacher, steps_per_fit, teacher_scores
from streamrec.models.export import (
    check_parity,
    export_onnx,
    onnx_session,
    quantize_int8,
    write_metadata,
)
from streamrec.models.metadata import ModelMetadata
from streamrec.models.metrics import (
    ndcg_at_k_per_group,
    ndcg_hr_at_k,
    retrieval_order_scores,
)
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
from streamrec.training.stream import TrainingStream

VALID_FRAC = 0.1  # latest share of the learning groups that picks each model's best epoch
SHARE_RESAMPLES = 1000  # bootstrap resamples of the student's share of the teacher


class TrainingError(RuntimeError):
    """The training data cannot produce a reranker (too few usable events, ...)."""


@dataclass
class RuleModels:
    """What :func:`fit_rule` trained for one rule: its part of the report (``groups``,
    ``quality``, ``latency_ms``, ``speedup_teacher_onnx_over_student``,
    ``parity_max_abs_diff``, ``gate``, ``seconds``) and the replay's popular counts."""

    report: dict[str, Any]
    popular: Popular

    @property
    def passed(self) -> bool:
        return bool(self.report["gate"]["passed"])


def fit_rule(
    stream: TrainingStream,
    index: CandidateIndex,
    vectors: np.ndarray,
    item_ids: list[str],
    engine_config: EngineConfig,
    out: Artifacts,
    model_version: str,
    data_sha: str,
    config: TrainingConfig,
    progress: Progress | None,
) -> RuleModels:
    """Replay the stream under ``engine_config``'s rule, fit and export its rerankers into
    ``out`` (its ``for_rule`` layout), measure them on the held-out groups and gate them.
    Every fit seeds itself, so a rule's models do not depend on the rules trained before."""
    out.models.mkdir(parents=True, exist_ok=True)
    clock: dict[str, float] = {}
    t0 = time.perf_counter()
    learn, held_out, popular = _log_groups(stream, index, engine_config, item_ids, config, progress)
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
        tracker(progress, _named("training teacher", engine_config), fit_steps),
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
        tracker(progress, _named("distilling student", engine_config), fit_steps),
    )
    clock["student_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    metadata = ModelMetadata(FEATURE_NAMES, model_version, data_sha)
    probe = _probe(held_out if len(held_out) else learn, vectors)
    parity = _export(out, student, teacher, probe, metadata)
    clock["export_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    fp32 = Scorer.load(out.reranker, FEATURE_NAMES, device="cpu")
    int8 = Scorer.load(out.reranker_int8, FEATURE_NAMES, device="cpu")
    quality, share = _quality(held_out, teacher, vectors, fp32, int8)
    latency, faster = _latency(probe, teacher, out.teacher, fp32, int8, config, progress)
    clock["evaluate_s"] = time.perf_counter() - t0

    metrics = {f"{model}.{k}": v for model, q in quality.items() for k, v in q.items()}
    metrics.update({f"latency.{m}.p99_ms": v["p99_ms"] for m, v in latency.items()})
    final = ModelMetadata(FEATURE_NAMES, model_version, data_sha, metrics)
    for path in (out.reranker, out.reranker_int8):
        write_metadata(path, final)
    checks = gate_checks(
        quality,
        faster,
        min_quality=config.gate_quality,
        min_speedup=config.gate_speedup,
        share_interval=share,
    )
    report = {
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
        "student_share_ci95": [round(share[0], 4), round(share[1], 4)],
        "latency_candidates": LATENCY_CANDIDATES,
        "latency_ms": latency,
        "speedup_teacher_onnx_over_student": round(faster, 3),
        "parity_max_abs_diff": parity,
        "gate": {"passed": all(c.passed for c in checks), "checks": [asdict(c) for c in checks]},
        "seconds": {k: round(v, 2) for k, v in clock.items()},
    }
    return RuleModels(report, popular)


def _named(task: str, engine_config: EngineConfig) -> str:
    return f"{task} ({engine_config.rule})"


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
    popular = Popular(engine_config.popular_half_life_s, engine_config.popular_top)
    engine = Engine(
        index,
        None,
        rule_of(engine_config),
        popular,
        engine_config,
        clock=lambda: 0,
        covis=CoVisitation(rows=popular.rows, **covis_params(engine_config)),
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
) -> tuple[dict[str, dict[str, float]], tuple[float, float]]:
    """NDCG@10 / HR@10 of each ranking of the held-out groups; students via ONNX Runtime.
    ``retrieval`` and ``popularity`` rank the candidates by one source's signal alone (the
    search's order; the decayed popular counts the engine serves cold users by). Also the
    95 % interval of the fp32 student's NDCG@10 share of the teacher's over these groups
    (paired bootstrap): on MovieLens-100k's 4,966 held-out events it spans about ±3 points,
    so a share a point from the gate's bar is within sampling noise."""
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
    quality = {
        name: {k: round(v, 5) for k, v in ndcg_hr_at_k(s, relevant, mask).items()}
        for name, s in scores.items()
    }
    # each held-out event its own resampling unit (the groups do not say whose they are)
    boot = PairedBootstrap(np.arange(len(groups)), samples=SHARE_RESAMPLES, seed=0)
    share = boot.ratio(
        ndcg_at_k_per_group(scores["student_fp32"], relevant, mask),
        ndcg_at_k_per_group(scores["teacher"], relevant, mask),
    )
    return quality, (share.low, share.high)


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
