"""Offline ranking metrics: NDCG@k and HR@k with one relevant item per group."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamrec.models.metrics import ndcg_hr_at_k, ranks_of_relevant, retrieval_order_scores


def test_rank_of_the_relevant_item_by_descending_score() -> None:
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1], [1.0, 2.0, 3.0]])
    relevant = np.array([[False, False, True], [False, False, False], [True, False, False]])
    mask = np.ones_like(relevant)
    assert ranks_of_relevant(scores, relevant, mask).tolist() == [1, -1, 2]


def test_padded_slots_never_rank() -> None:
    scores = np.array([[5.0, 1.0, 0.0]])
    relevant = np.array([[False, False, True]])
    mask = np.array([[False, True, True]])
    assert ranks_of_relevant(scores, relevant, mask).tolist() == [1]


def test_ndcg_and_hit_rate_at_k() -> None:
    scores = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    relevant = np.array([[True, False, False], [False, True, False], [False, False, False]])
    got = ndcg_hr_at_k(scores, relevant, np.ones_like(relevant), k=2)
    assert got["hr@2"] == pytest.approx(2 / 3)
    assert got["ndcg@2"] == pytest.approx((1.0 + 1 / math.log2(3)) / 3)


def test_retrieval_order_keeps_candidate_order() -> None:
    mask = np.ones((2, 4), dtype=bool)
    relevant = np.zeros((2, 4), dtype=bool)
    relevant[0, 3] = relevant[1, 0] = True
    ranks = ranks_of_relevant(retrieval_order_scores(mask), relevant, mask)
    assert ranks.tolist() == [3, 0]
