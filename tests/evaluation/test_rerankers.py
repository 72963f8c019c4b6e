"""The teacher through the engine's batch hook (fed as training fed it); the co-visitation
variant (the engine's own co-visitation at the evaluator's weight)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from streamrec.config import Settings
from streamrec.evaluation.rerankers import TeacherReranker
from streamrec.evaluation.run import EvalOptions, evaluate
from streamrec.evaluation.variants import Variant
from streamrec.models.export import export_onnx, onnx_session
from streamrec.models.teacher import Teacher, TeacherConfig
from streamrec.streams.core.features import FEATURE_NAMES, UserContext
from streamrec.streams.core.ranking import RerankBatch
from streamrec.streams.wire import Event

torch = pytest.importorskip("torch")  # the teacher is exported with the `train` extra

DIM, SEQ = 8, 5
WEIGHTS = {"click": 1.0, "save": 2.0}


def _context(history: tuple[tuple[str, str, int], ...]) -> UserContext:
    newest = history[::-1]
    return UserContext(
        queries=np.ones((1, DIM), np.float32) / np.sqrt(DIM),
        query_weights=np.ones(1, np.float32),
        recent_items=tuple(i for i, _, _ in newest),
        recent_saves=tuple(a == "save" for _, a, _ in newest),
        n_events=len(history),
        save_frac=0.0,
        gap_s=0.0,
        span_s=0.0,
        cold=False,
        history=history,
    )


def _batch(
    contexts: list[UserContext], candidates: list[list[str]], catalog: dict[str, np.ndarray]
) -> RerankBatch:
    counts = np.array([len(c) for c in candidates])
    flat = [i for c in candidates for i in c]
    rng = np.random.default_rng(1)

    def vectors_of(ids):  # type: ignore[no-untyped-def]
        found = np.array([i in catalog for i in ids], dtype=bool)
        out = np.stack([catalog.get(i, np.zeros(DIM, np.float32)) for i in ids])
        return out.astype(np.float32), found

    return RerankBatch(
        features=rng.random((len(flat), len(FEATURE_NAMES)), dtype=np.float32),
        owner=np.repeat(np.arange(len(contexts)), counts),
        offsets=np.concatenate([[0], np.cumsum(counts)]),
        contexts=contexts,
        events=[Event(f"e{n}", f"u{n}", "x", "click", 0) for n in range(len(contexts))],
        candidate_ids=flat,
        candidate_vectors=vectors_of(flat)[0],
        action_weights=WEIGHTS,
        vectors_of=vectors_of,
    )


def _export_teacher(path: Path) -> None:

    torch.manual_seed(0)
    teacher = Teacher(len(FEATURE_NAMES), DIM, SEQ, TeacherConfig(hidden=8, heads=2, mlp=16))
    teacher.eval()
    probe = {
        "features": torch.rand(1, 3, len(FEATURE_NAMES)),
        "items": torch.rand(1, 3, DIM),
        "seq": torch.rand(1, SEQ, DIM),
        "seq_weight": torch.ones(1, SEQ),
    }
    export_onnx(teacher, probe, path, dynamic_axes=Teacher.ONNX_AXES)


def test_teacher_reranker_feeds_the_teacher_as_training_did(tmp_path: Path) -> None:
    _export_teacher(tmp_path / "teacher.onnx")
    rng = np.random.default_rng(0)
    catalog = {f"i{n}": rng.standard_normal(DIM).astype(np.float32) for n in range(12)}
    # user 0: 7 actions (longer than the sequence), one on an item without a vector;
    # user 1: two actions (left-padded)
    long = tuple((f"i{n}" if n != 5 else "gone", "save" if n % 2 else "click", n) for n in range(7))
    short = (("i3", "click", 1), ("i4", "save", 2))
    batch = _batch([_context(long), _context(short)], [["i7", "i8", "i9"], ["i10", "i11"]], catalog)
    got = TeacherReranker(tmp_path / "teacher.onnx").score_batch(batch)
    session = onnx_session(tmp_path / "teacher.onnx")  # one group per call, unpadded

    def expected(history, rows):  # type: ignore[no-untyped-def]
        tail = [(i, a) for i, a, _ in history[-SEQ:] if i in catalog]  # ring tail, known items
        seq = np.zeros((1, SEQ, DIM), np.float32)
        weight = np.zeros((1, SEQ), np.float32)
        if tail:
            seq[0, -len(tail) :] = [catalog[i] for i, _ in tail]
            weight[0, -len(tail) :] = [WEIGHTS[a] for _, a in tail]
        ids = [batch.candidate_ids[r] for r in rows]
        feeds = {
            "features": batch.features[rows][None],
            "items": np.stack([catalog[i] for i in ids])[None],
            "seq": seq,
            "seq_weight": weight,
        }
        return session.run(None, feeds)[0][0]

    want = np.concatenate([expected(long, [0, 1, 2]), expected(short, [3, 4])])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_covis_variant_with_weight_zero_ranks_as_retrieval_order_does(world) -> None:  # type: ignore[no-untyped-def]
    options = EvalOptions(
        variants=(Variant("decayed", "none"), Variant("decayed", "covis")), baselines=()
    )
    run = evaluate(
        world["test"],
        world["artifacts"],
        Settings(eval_covis_weight=0.0),
        options,
        warmup_path=world["warmup"],
    )
    plain, covis = run.replay.outcomes["decayed:none"], run.replay.outcomes["decayed:covis"]
    assert covis.digest == plain.digest  # the engine's co-visitation off: retrieval order
    weighted = evaluate(
        world["test"],
        world["artifacts"],
        Settings(eval_covis_weight=1.0),
        options,
        warmup_path=world["warmup"],
    )
    assert weighted.replay.outcomes["decayed:covis"].digest != plain.digest


def test_teacher_variant_runs_in_the_replay(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    artifacts = tmp_path / "artifacts"
    shutil.copytree(world["artifacts"], artifacts)
    dim = int(np.load(artifacts / "item_vectors.npz")["vectors"].shape[1])
    torch.manual_seed(0)
    teacher = Teacher(len(FEATURE_NAMES), dim, SEQ, TeacherConfig(hidden=8, heads=2, mlp=16))
    probe = {
        "features": torch.rand(1, 3, len(FEATURE_NAMES)),
        "items": torch.rand(1, 3, dim),
        "seq": torch.rand(1, SEQ, dim),
        "seq_weight": torch.ones(1, SEQ),
    }
    export_onnx(teacher.eval(), probe, artifacts / "teacher.onnx", dynamic_axes=Teacher.ONNX_AXES)
    options = EvalOptions(
        variants=(Variant("decayed", "none"), Variant("decayed", "teacher")), baselines=()
    )
    run = evaluate(world["test"], artifacts, Settings(), options, warmup_path=world["warmup"])
    assert not run.skipped
    assert run.engine_info["decayed:teacher"]["provider"] == "CPUExecutionProvider"
    plain, taught = run.replay.outcomes["decayed:none"], run.replay.outcomes["decayed:teacher"]
    assert taught.digest != plain.digest  # reranked: same candidates, another order
