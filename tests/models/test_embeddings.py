"""Item embeddings: items acted on one after another end up close; runs are reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.models.embeddings import METHODS, EmbeddingConfig, train_item_embeddings


def two_taste_log(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Users who each browse either items 0-19 or items 20-39, in random order."""
    rng = np.random.default_rng(seed)
    seqs, weights = [], []
    for user in range(120):
        block = (user % 2) * 20
        seq = rng.choice(np.arange(block, block + 20), size=15, replace=False)
        seqs.append(seq.astype(np.int64))
        weights.append(rng.choice([1.0, 2.0], size=15))
    return seqs, weights


@pytest.mark.parametrize("method", METHODS)
def test_items_of_one_taste_are_nearer_than_across_tastes(method: str) -> None:
    seqs, weights = two_taste_log()
    vectors = train_item_embeddings(seqs, weights, 42, EmbeddingConfig(dim=8, method=method))
    assert vectors.shape == (42, 8) and vectors.dtype == np.float32
    sims = vectors[:40] @ vectors[:40].T
    same = np.add.outer(np.arange(40) // 20, np.arange(40) // 20) % 2 == 0
    off_diag = ~np.eye(40, dtype=bool)
    assert sims[same & off_diag].mean() > sims[~same].mean() + 0.3
    np.testing.assert_allclose(np.linalg.norm(vectors[:40], axis=1), 1.0, atol=1e-5)
    assert not vectors[40:].any()  # never seen: zero vectors


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_vectors(method: str) -> None:
    seqs, weights = two_taste_log()
    config = EmbeddingConfig(dim=8, method=method, seed=3)
    a = train_item_embeddings(seqs, weights, 40, config)
    b = train_item_embeddings(seqs, weights, 40, config)
    np.testing.assert_array_equal(a, b)


def test_unknown_method_is_refused() -> None:
    seqs, weights = two_taste_log()
    with pytest.raises(ValueError, match="unknown embedding method 'w2v'"):
        train_item_embeddings(seqs, weights, 40, EmbeddingConfig(dim=8, method="w2v"))
