"""The UpdateRule contract, checked against every rule ``make_rule`` knows (like the index's
contract suite): what the engine and the state changelog rely on, whatever the rule."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.streams.core.rules import UpdateRule, make_rule
from streamrec.streams.core.state import UserState

WEIGHTS = {"click": 1.0, "save": 2.0}
DIM = 8
HOUR_MS = 3_600_000


@pytest.fixture(params=["decayed", "multi"])
def rule(request: pytest.FixtureRequest) -> UpdateRule:
    return make_rule(
        request.param,
        half_life_s=3600.0,
        half_life_events=5.0,
        action_weights=WEIGHTS,
        interests=3,
        threshold=0.5,
    )


def _items(n: int, seed: int = 0) -> np.ndarray:
    """Vectors around three well-separated directions, of varied norms."""
    rng = np.random.default_rng(seed)
    centers = np.eye(DIM)[:3] * 4.0
    return centers[np.arange(n) % 3] + rng.normal(scale=0.3, size=(n, DIM))


def _replay(rule: UpdateRule, vectors: np.ndarray, ts_step: int = 60_000) -> UserState:
    state = UserState()
    for j, vector in enumerate(vectors):
        action = "save" if j % 4 == 0 else "click"
        rule.update(state, vector, rule.weight(action, None), j * ts_step)
    return state


def test_a_new_user_has_no_queries(rule: UpdateRule) -> None:
    queries, weights = rule.queries(UserState(), DIM)
    assert queries.shape == (0, DIM) and weights.shape == (0,)


def test_queries_are_unit_float32_strongest_first_weights_summing_to_one(
    rule: UpdateRule,
) -> None:
    queries, weights = rule.queries(_replay(rule, _items(30)), DIM)
    assert queries.dtype == np.float32 and weights.dtype == np.float32
    assert 1 <= len(queries) == len(weights) <= rule.max_queries
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-5)
    assert np.all(np.diff(weights) <= 1e-7)


def test_every_update_counts_one_known_item_and_keeps_event_time(rule: UpdateRule) -> None:
    state = _replay(rule, _items(7))
    assert state.n_known == 7 and state.rule_ts == 6 * 60_000


def test_the_item_vectors_norm_does_not_matter(rule: UpdateRule) -> None:
    vectors = _items(12)
    scaled = vectors * np.linspace(0.5, 20.0, len(vectors))[:, None]
    a, b = rule.queries(_replay(rule, vectors), DIM), rule.queries(_replay(rule, scaled), DIM)
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)
    np.testing.assert_allclose(a[1], b[1], atol=1e-5)


def test_an_older_event_does_not_rewind_time(rule: UpdateRule) -> None:
    state = UserState()
    rule.update(state, np.eye(DIM)[0], 1.0, 2 * HOUR_MS)
    rule.update(state, np.eye(DIM)[0], 1.0, HOUR_MS)
    assert state.rule_ts == 2 * HOUR_MS


def test_a_replay_is_bit_identical_and_survives_the_state_changelog(rule: UpdateRule) -> None:
    vectors = _items(25, seed=3)
    first, second = _replay(rule, vectors), _replay(rule, vectors)
    assert first.to_map() == second.to_map()
    # stored float32-rounded: a state read back from its map moves exactly like the original
    restored = UserState.from_map(first.to_map())
    for state in (first, restored):
        rule.update(state, vectors[0], 1.0, 10 * HOUR_MS)
    assert restored.to_map() == first.to_map()
    assert all(np.float32(x) == x for vec in first.vectors for x in vec)


def test_new_embeddings_of_another_dimension_restart_the_vectors(rule: UpdateRule) -> None:
    state = _replay(rule, _items(5))
    rule.update(state, np.ones(DIM * 2), 1.0, HOUR_MS)
    assert {len(v) for v in state.vectors} == {DIM * 2}
    assert rule.queries(state, DIM)[0].shape == (0, DIM)  # the old index's dimension: none
    assert rule.queries(state, 2 * DIM)[0].shape[1] == 2 * DIM


def test_the_query_follows_recent_actions(rule: UpdateRule) -> None:
    state = UserState()
    old, new = np.eye(DIM)[0], np.eye(DIM)[1]
    for j in range(10):
        rule.update(state, old, 1.0, j * 1000)
    for j in range(10, 14):
        rule.update(state, new, 1.0, j * 1000 + 10 * HOUR_MS)  # ten half-lives later
    queries, _ = rule.queries(state, DIM)
    assert queries[0] @ new > queries[0] @ old  # the strongest query is the fresh interest
