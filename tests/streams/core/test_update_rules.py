"""Update rules on hand-made vectors: the decay and weighting math, and multi-interest."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.streams.core.rules import DecayedEmbedding, MultiInterest, make_rule
from streamrec.streams.core.state import UserState

WEIGHTS = {"click": 1.0, "save": 2.0}
HOUR_MS = 3_600_000


def decayed(half_life_events: float = 0.0) -> DecayedEmbedding:
    return DecayedEmbedding(
        half_life_s=3600.0, half_life_events=half_life_events, action_weights=WEIGHTS
    )


def test_decayed_embedding_halves_history_per_half_life_of_event_time() -> None:
    rule, state = decayed(), UserState()
    rule.update(state, np.array([3.0, 0.0]), rule.weight("click", None), 0)  # normalized to [1,0]
    rule.update(state, np.array([0.0, 1.0]), rule.weight("save", None), HOUR_MS)
    np.testing.assert_allclose(state.vectors, [[0.5, 2.0]], rtol=1e-6)
    np.testing.assert_allclose(state.masses, [2.5], rtol=1e-6)
    queries, weights = rule.queries(state, 2)
    np.testing.assert_allclose(queries, [[0.5, 2.0] / np.hypot(0.5, 2.0)], rtol=1e-6)
    np.testing.assert_allclose(weights, [1.0])
    assert state.n_known == 2 and state.rule_ts == HOUR_MS


def test_event_count_decay_and_event_weight_multiply() -> None:
    rule, state = decayed(half_life_events=1.0), UserState()
    rule.update(state, np.array([1.0, 0.0]), rule.weight("click", None), 0)
    rule.update(state, np.array([0.0, 1.0]), rule.weight("click", 3.0), 0)
    # Same ts: only the per-event half-life applies (x0.5), the second counts 1 * 3.
    np.testing.assert_allclose(state.vectors, [[0.5, 3.0]], rtol=1e-6)


def test_an_older_event_does_not_rewind_time() -> None:
    rule, state = decayed(), UserState()
    rule.update(state, np.array([1.0, 0.0]), 1.0, 2 * HOUR_MS)
    rule.update(state, np.array([0.0, 1.0]), 1.0, HOUR_MS)
    np.testing.assert_allclose(state.vectors, [[1.0, 1.0]], rtol=1e-6)
    assert state.rule_ts == 2 * HOUR_MS


def test_multi_interest_keeps_two_separated_clusters_apart() -> None:
    rng = np.random.default_rng(0)
    a, b = np.eye(8)[0], np.eye(8)[1]
    rule = MultiInterest(
        interests=4, threshold=0.5, half_life_s=1e6, half_life_events=0, action_weights=WEIGHTS
    )
    state = UserState()
    for j in range(20):
        center = a if j % 2 == 0 else b
        rule.update(state, center + 0.1 * rng.normal(size=8), 1.0, j * 1000)
    queries, weights = rule.queries(state, 8)
    assert len(queries) == 2
    sims = queries @ np.stack([a, b]).T
    assert sorted(np.argmax(sims, axis=1).tolist()) == [0, 1]
    assert sims.max(axis=1).min() > 0.95
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-6)


def test_multi_interest_replaces_its_weakest_interest_when_full() -> None:
    rule = MultiInterest(
        interests=2, threshold=0.9, half_life_s=1e6, half_life_events=0, action_weights=WEIGHTS
    )
    state = UserState()
    e = np.eye(4)
    rule.update(state, e[0], 2.0, 0)  # strong interest
    rule.update(state, e[1], 1.0, 0)  # weak interest
    rule.update(state, e[2], 1.5, 0)  # new: replaces the weak one
    queries, _ = rule.queries(state, 4)
    np.testing.assert_allclose(queries, [e[0], e[2]], atol=1e-6)


def test_make_rule_names_both_rules_and_refuses_others() -> None:
    common = {"half_life_s": 1.0, "half_life_events": 0.0, "action_weights": WEIGHTS}
    assert make_rule("decayed", **common).max_queries == 1
    assert make_rule("multi", interests=3, **common).max_queries == 3
    with pytest.raises(ValueError, match="unknown update rule 'lru'"):
        make_rule("lru", **common)


def test_a_multi_interest_state_collapses_into_one_decayed_embedding() -> None:
    common = {"half_life_s": 1e6, "half_life_events": 0.0, "action_weights": WEIGHTS}
    multi = MultiInterest(interests=3, threshold=0.9, **common)
    state = UserState()
    e = np.eye(3)
    multi.update(state, e[0], 1.0, 0)
    multi.update(state, e[1], 2.0, 0)
    DecayedEmbedding(**common).update(state, e[2], 1.0, 0)  # the rule was switched
    np.testing.assert_allclose(state.vectors, [[1.0, 2.0, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(state.masses, [4.0], rtol=1e-6)


def test_vectors_of_another_dimension_give_no_queries_and_restart_on_update() -> None:
    rule, state = decayed(), UserState()
    rule.update(state, np.ones(4), 1.0, 0)
    assert rule.queries(state, 8)[0].shape == (0, 8)  # embeddings were re-trained
    rule.update(state, np.eye(8)[0], 1.0, 0)
    np.testing.assert_allclose(rule.queries(state, 8)[0], [np.eye(8)[0]])


def test_zero_weight_actions_make_no_query() -> None:
    rule, state = decayed(), UserState()
    rule.update(state, np.ones(4), 0.0, 0)
    assert len(rule.queries(state, 4)[0]) == 0


def test_negligible_interests_are_not_searched() -> None:
    rule = MultiInterest(
        interests=3, threshold=0.9, half_life_s=1e6, half_life_events=0, action_weights=WEIGHTS
    )
    state = UserState()
    e = np.eye(3)
    rule.update(state, e[0], 10.0, 0)
    rule.update(state, e[1], 9.0, 0)
    rule.update(state, e[2], 0.5, 0)  # 2.6 % of the weight
    queries, weights = rule.queries(state, 3)
    np.testing.assert_allclose(queries, e[:2], atol=1e-6)
    np.testing.assert_allclose(weights, [10 / 19, 9 / 19], rtol=1e-6)
