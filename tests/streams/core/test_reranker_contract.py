"""The Ranker contract, checked against every way the engine ranks personalized candidates
(like the index's contract suite): the ONNX student (a feature scorer), the ONNX teacher (a
batch reranker), the evaluator's fan-out of both, and co-visitation without a reranker —
real models, real index."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamrec.models.scorer import Scorer
from streamrec.streams.core.covis import CoVisitation
from streamrec.streams.core.engine import Engine
from streamrec.streams.core.features import FEATURE_NAMES
from streamrec.streams.core.ranking import (
    BatchRanker,
    CovisRanker,
    FeatureRanker,
    Ranker,
    RerankBatch,
    ranker_of,
    top_k,
)
from streamrec.streams.core.retrieval import PERSONALIZED, CandidateSet
from streamrec.streams.core.state import UserState
from streamrec.streams.wire import Event

torch = pytest.importorskip("torch")  # the test models are exported with the `train` extra

RANKERS = ["student", "teacher", "fanout", "covis"]
SEQ = 5


@pytest.fixture(scope="session")
def teacher_onnx(tmp_path_factory: pytest.TempPathFactory, catalog: Any) -> Path:
    """A tiny real teacher over the test catalog's dimension, exported as training does."""
    from streamrec.models.export import export_onnx
    from streamrec.models.teacher import Teacher, TeacherConfig

    DIM = catalog.vectors.shape[1]
    torch.manual_seed(0)
    teacher = Teacher(len(FEATURE_NAMES), DIM, SEQ, TeacherConfig(hidden=8, heads=2, mlp=16))
    probe = {
        "features": torch.rand(1, 3, len(FEATURE_NAMES)),
        "items": torch.rand(1, 3, DIM),
        "seq": torch.rand(1, SEQ, DIM),
        "seq_weight": torch.ones(1, SEQ),
    }
    path = tmp_path_factory.mktemp("teacher") / "teacher.onnx"
    return export_onnx(teacher.eval(), probe, path, dynamic_axes=Teacher.ONNX_AXES)


@pytest.fixture(params=RANKERS)
def setup(
    request: pytest.FixtureRequest,
    make_engine: Callable[..., Engine],
    make_stream: Callable[..., list[Event]],
    reranker_onnx: Path,
    teacher_onnx: Path,
) -> tuple[Engine, Ranker, list[CandidateSet]]:
    """An engine ranking with the ranker under test, and the personalized candidate sets of
    one batch (after a warm-up that fed popularity and co-visitation)."""
    from streamrec.evaluation.rerankers import TeacherReranker
    from streamrec.evaluation.variants import FanOut

    student = Scorer.load(reranker_onnx, FEATURE_NAMES)
    teacher = TeacherReranker(teacher_onnx)
    scorer = {"student": student, "teacher": teacher, "covis": None}.get(
        request.param, FanOut([("student", student), ("teacher", teacher), ("order", None)])
    )
    engine = make_engine(scorer, covis_weight=2.0)
    engine.covis = CoVisitation(window=3)
    engine.stats.statistics.append(engine.covis)
    events = make_stream(300, users=10)
    states: dict[str, UserState] = {}
    engine.apply(events[:240], states)
    sets = engine.prepare(events[240:], states)
    ranker = engine.ranker()
    assert ranker is not None
    return engine, ranker, [c for c in sets if c.source == PERSONALIZED and c.ids]


def test_the_engine_picks_the_ranker_for_its_reranker(
    setup: tuple[Engine, Ranker, list[CandidateSet]],
) -> None:
    engine, ranker, _ = setup
    expected = {
        "Scorer": FeatureRanker,
        "TeacherReranker": BatchRanker,
        "FanOut": BatchRanker,
        "NoneType": CovisRanker,
    }[type(engine.scorer).__name__]
    assert type(ranker) is expected
    assert ranker.needs_features == (engine.scorer is not None)


def test_one_finite_score_per_candidate_in_order(
    setup: tuple[Engine, Ranker, list[CandidateSet]],
) -> None:
    _, ranker, sets = setup
    scores = ranker.scores(sets)
    assert scores.shape == (sum(len(c.ids) for c in sets),)
    assert np.isfinite(scores).all()
    assert len(np.unique(scores)) > 1


def test_scores_are_deterministic(setup: tuple[Engine, Ranker, list[CandidateSet]]) -> None:
    _, ranker, sets = setup
    np.testing.assert_array_equal(ranker.scores(sets), ranker.scores(sets))


def test_a_users_scores_do_not_depend_on_the_rest_of_the_batch(
    setup: tuple[Engine, Ranker, list[CandidateSet]],
) -> None:
    _, ranker, sets = setup
    together = ranker.scores(sets)
    bounds = np.cumsum([0, *(len(c.ids) for c in sets)])
    for j in range(0, len(sets), 7):
        alone = ranker.scores([sets[j]])
        np.testing.assert_allclose(alone, together[bounds[j] : bounds[j + 1]], atol=1e-5)
        reordered = ranker.scores([sets[j], *sets[:j]])[: len(sets[j].ids)]
        np.testing.assert_allclose(reordered, alone, atol=1e-5)


def test_each_list_is_its_top_k_by_those_scores(
    setup: tuple[Engine, Ranker, list[CandidateSet]],
) -> None:
    engine, ranker, sets = setup
    k = engine.config.k
    recs = top_k(sets, ranker, k, clock=lambda: 42, model_version="v")
    for c, rec in zip(sets, recs, strict=True):
        scores = ranker.scores([c])
        top = np.argsort(-scores, kind="stable")[:k]
        assert rec.items == [c.ids[i] for i in top]
        np.testing.assert_allclose(rec.scores, scores[top], atol=1e-5)


@pytest.mark.parametrize("setup", ["teacher", "fanout"], indirect=True)  # the batch rerankers
def test_a_batch_reranker_sees_every_rows_user_candidate_and_vector(
    setup: tuple[Engine, Ranker, list[CandidateSet]],
) -> None:
    engine, ranker, sets = setup
    assert isinstance(ranker, BatchRanker)
    seen: list[RerankBatch] = []
    inner = ranker.reranker

    class Spy:
        model_version = inner.model_version

        def score_batch(self, batch: RerankBatch) -> np.ndarray:
            seen.append(batch)
            return inner.score_batch(batch)

    ranker_of(Spy(), None, 0.0, engine.rule.action_weights, engine.index.get_vectors).scores(sets)
    (batch,) = seen
    assert batch.candidate_ids == [i for c in sets for i in c.ids]
    assert [e.event_id for e in batch.events] == [c.event.event_id for c in sets]
    np.testing.assert_array_equal(batch.features, np.vstack([c.features for c in sets]))
    np.testing.assert_array_equal(
        batch.candidate_vectors, engine.index.get_vectors(batch.candidate_ids)[0]
    )
    assert batch.offsets[-1] == len(batch.owner) == len(batch.candidate_ids)
