"""Paired bootstrap over users: intervals that contain the estimate, and exact ratios."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.evaluation.bootstrap import Interval, PairedBootstrap


def _boot(users: np.ndarray) -> PairedBootstrap:
    return PairedBootstrap(users, samples=500, seed=3)


def test_metric_interval_contains_the_point_estimate() -> None:
    rng = np.random.default_rng(0)
    users = rng.integers(0, 50, size=2000)
    hits = (rng.random(2000) < 0.3).astype(float)
    got = _boot(users).metric(hits)
    assert got.value == pytest.approx(hits.mean())
    assert got.low < got.value < got.high
    assert got.high - got.low < 0.1


def test_a_system_against_itself_has_ratio_exactly_one() -> None:
    rng = np.random.default_rng(1)
    users = rng.integers(0, 30, size=500)
    hits = (rng.random(500) < 0.5).astype(float)
    got = _boot(users).ratio(hits, hits)
    assert (got.value, got.low, got.high) == (1.0, 1.0, 1.0)


def test_pairing_makes_a_constant_ratio_certain() -> None:
    """System a has twice the gain of b on every event: whatever users are drawn, the ratio
    is 2 — only a paired resample gives that zero-width interval."""
    rng = np.random.default_rng(2)
    users = rng.integers(0, 40, size=800)
    b = rng.random(800)
    got = _boot(users).ratio(2 * b, b)
    assert got.low == pytest.approx(2.0) and got.high == pytest.approx(2.0)


def test_masked_metric_uses_only_the_selected_events() -> None:
    users = np.array([0, 0, 1, 1, 2, 2])
    hits = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    mask = np.array([True, False, True, False, True, False])
    got = _boot(users).metric(hits, mask)
    assert (got.value, got.low, got.high) == (1.0, 1.0, 1.0)


def test_overlap() -> None:
    assert Interval(0.5, 0.4, 0.6).overlaps(Interval(0.7, 0.55, 0.8))
    assert not Interval(0.5, 0.4, 0.6).overlaps(Interval(0.9, 0.8, 1.0))


def test_resamples_draw_only_users_with_scored_events() -> None:
    """Warm-up-only users hold indices too (0..99 here) but no scored event: a resample
    must draw the 3 test users, so every resample has exactly their 6 events."""
    users = np.array([97, 97, 50, 50, 99, 99])
    boot = _boot(users)
    assert boot.n_users == 3
    assert (boot.weights.sum(axis=1) == 3).all()
    assert (boot.weights @ boot.events_per_user == 6).all()
