"""Ranking metrics on hand-made ranks whose answers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamrec.evaluation.metrics import MISS, coverage, gains, hr_curve, mean_metric, sliding

# five events: target at rank 0, 3, 9, 15, and absent
RANKS = np.array([0, 3, 9, 15, MISS])


def test_hit_rate_counts_targets_inside_the_cut_off() -> None:
    assert mean_metric(RANKS, "HR@1") == pytest.approx(1 / 5)
    assert mean_metric(RANKS, "HR@10") == pytest.approx(3 / 5)
    assert mean_metric(RANKS, "HR@20") == pytest.approx(4 / 5)


def test_ndcg_with_one_relevant_item_is_the_discount_of_its_rank() -> None:
    expected = (1.0 + 1 / math.log2(5) + 1 / math.log2(11)) / 5
    assert mean_metric(RANKS, "NDCG@10") == pytest.approx(expected)


def test_mrr_is_the_mean_reciprocal_rank_and_zero_for_a_miss() -> None:
    assert mean_metric(RANKS, "MRR") == pytest.approx((1 + 1 / 4 + 1 / 10 + 1 / 16) / 5)
    assert gains(np.array([MISS]), "MRR")[0] == 0.0


def test_hr_curve_matches_hit_rate_at_every_k() -> None:
    curve = hr_curve(RANKS, 20)
    for k in (1, 4, 10, 16, 20):
        assert curve[k - 1] == pytest.approx(mean_metric(RANKS, f"HR@{k}"))


def test_unknown_metric_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        gains(RANKS, "recall@10")


def test_sliding_window_is_the_trailing_mean() -> None:
    out = sliding(np.array([1.0, 0.0, 1.0, 1.0]), 2)
    assert out.tolist() == [1.0, 0.5, 0.5, 1.0]


def test_coverage_is_the_share_of_the_catalog_shown() -> None:
    assert coverage({1, 2, 3}, 12) == pytest.approx(0.25)
