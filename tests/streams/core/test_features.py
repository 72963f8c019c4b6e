"""Reranker features: shape, meaning of the key columns, determinism."""

from __future__ import annotations

import numpy as np

from streamrec.index import CandidateIndex
from streamrec.streams.core.features import (
    COVIS_FEATURE,
    FEATURE_NAMES,
    UserContext,
    build_features,
)
from streamrec.streams.core.rules import DecayedEmbedding
from streamrec.streams.core.state import UserState
from streamrec.streams.wire import Event

WEIGHTS = {"click": 1.0, "save": 2.0}
RULE = DecayedEmbedding(half_life_s=3600.0, half_life_events=0.0, action_weights=WEIGHTS)
BOUNDS = {"recent_size": 20, "seen_size": 100, "applied_ids": 50}


def user_with(index: CandidateIndex, items: list[str], actions: list[str]) -> UserState:
    state = UserState()
    vectors, _ = index.get_vectors(items)
    for j, (item, action, vec) in enumerate(zip(items, actions, vectors, strict=True)):
        event = Event(f"e{j}", "u", item, action, 60_000 * j)
        state.record(event, **BOUNDS)
        RULE.update(state, vec, RULE.weight(action, None), event.ts)
    return state


def features_of(
    index: CandidateIndex,
    users: list[UserContext],
    candidates: list[list[str]],
    popularity: np.ndarray,
) -> np.ndarray:
    """Fetch vectors as the engine does (candidates, then recent items) and build."""
    flat = [i for c in candidates for i in c]
    recent = [i for u in users for i in u.recent_items]
    vectors, found = index.get_vectors(flat + recent)
    n = len(flat)
    return build_features(users, candidates, vectors[:n], vectors[n:], found[n:], popularity)


def contexts_and_candidates(
    index: CandidateIndex,
) -> tuple[list[UserContext], list[list[str]]]:
    a = user_with(index, ["item0", "item6", "item12"], ["click", "save", "click"])
    b = user_with(index, ["item1"], ["click"])
    users = [UserContext.of(s, RULE, dim=index.dim, recent=10, cold_threshold=1) for s in (a, b)]
    candidates = [["item18", "item1", "item24"], ["item7", "item13"]]
    return users, candidates


def test_one_float32_row_per_pair_with_every_named_feature(index: CandidateIndex) -> None:
    users, candidates = contexts_and_candidates(index)
    feats = features_of(index, users, candidates, np.arange(5.0))
    assert feats.shape == (5, len(FEATURE_NAMES)) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


def test_columns_mean_what_their_names_say(index: CandidateIndex) -> None:
    users, candidates = contexts_and_candidates(index)
    feats = features_of(index, users, candidates, np.array([0.0, 1.0, 3.0, 0.0, 0.0]))
    col = {name: feats[:, i] for i, name in enumerate(FEATURE_NAMES)}
    vec, _ = index.get_vectors(["item18", "item1", "item24"])
    np.testing.assert_allclose(col["retrieval_score"][:3], vec @ users[0].queries[0], rtol=1e-5)
    np.testing.assert_allclose(col["retrieval_rank_log"][:3], np.log1p([0, 1, 2]), rtol=1e-6)
    np.testing.assert_allclose(col["pop_log"][:3], np.log1p([0.0, 1.0, 3.0]), rtol=1e-6)
    # item18 shares a cluster with item0/6/12: far more similar than item1 is.
    assert col["recent_sim_max"][0] > 0.8 > col["recent_sim_max"][1]
    # user b's only (and last) item is item1; its candidates item7/item13 share its cluster.
    assert (col["last_sim"][3:] > 0.8).all()
    assert (col["save_sim_max"][3:] == 0).all()  # user b saved nothing
    np.testing.assert_allclose(col["user_events_log"], np.log1p([3, 3, 3, 1, 1]), rtol=1e-6)
    np.testing.assert_allclose(col["user_save_frac"], [1 / 3] * 3 + [0, 0], rtol=1e-6)
    np.testing.assert_allclose(col["user_gap_log"][:3], np.log1p(60.0), rtol=1e-6)
    assert (col["cold"] == 0).all()


def test_same_inputs_give_bit_identical_features(index: CandidateIndex) -> None:
    users, candidates = contexts_and_candidates(index)
    first = features_of(index, users, candidates, np.ones(5))
    second = features_of(index, users, candidates, np.ones(5))
    assert first.tobytes() == second.tobytes()


def test_no_candidates_gives_an_empty_matrix(index: CandidateIndex) -> None:
    users, _ = contexts_and_candidates(index)
    feats = features_of(index, users, [[], []], np.zeros(0))
    assert feats.shape == (0, len(FEATURE_NAMES))


def test_a_user_without_history_gets_zero_user_similarities(index: CandidateIndex) -> None:
    cold = UserContext.of(UserState(), RULE, dim=index.dim, recent=10, cold_threshold=1)
    assert cold.cold
    feats = features_of(index, [cold], [["item3", "item4"]], np.ones(2))
    col = {name: feats[:, i] for i, name in enumerate(FEATURE_NAMES)}
    user_columns = ("retrieval_score", "query_weight", "recent_sim_max", "last_sim")
    for name in (*user_columns, "user_events_log"):
        assert (col[name] == 0).all(), name
    assert (col["cold"] == 1).all()


def test_recent_items_missing_from_the_index_are_left_out(index: CandidateIndex) -> None:
    state = user_with(index, ["item0"], ["click"])
    state.record(Event("x", "u", "deleted", "click", 10**6), **BOUNDS)  # newest, unknown
    user = UserContext.of(state, RULE, dim=index.dim, recent=10, cold_threshold=1)
    assert user.recent_items == ("deleted", "item0")
    feats = features_of(index, [user], [["item6", "item1"]], np.ones(2))
    col = {name: feats[:, i] for i, name in enumerate(FEATURE_NAMES)}
    assert (col["last_sim"] == 0).all()  # the last item has no vector
    np.testing.assert_allclose(col["recent_sim_mean"], col["recent_sim_max"], rtol=1e-6)
    assert col["recent_sim_max"][0] > 0.5 > col["recent_sim_max"][1]


def test_the_covis_column_is_the_given_co_visitation_and_0_without(
    index: CandidateIndex,
) -> None:
    users, candidates = contexts_and_candidates(index)
    flat = [i for c in candidates for i in c]
    recent = [i for u in users for i in u.recent_items]
    vectors, found = index.get_vectors(flat + recent)
    n, covis = len(flat), np.array([0.0, 1.0, 0.25, 0.5, 0.0])
    parts = (users, candidates, vectors[:n], vectors[n:], found[n:], np.ones(n))
    col = FEATURE_NAMES.index(COVIS_FEATURE)
    with_covis = build_features(*parts, covis)
    np.testing.assert_array_equal(with_covis[:, col], covis.astype(np.float32))
    without = build_features(*parts)
    assert (without[:, col] == 0).all()
    others = np.arange(len(FEATURE_NAMES)) != col
    np.testing.assert_array_equal(with_covis[:, others], without[:, others])
