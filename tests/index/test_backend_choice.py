"""Backend selection (kind by size, device by what faiss sees), parameters and metrics."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from streamrec.config import Settings
from streamrec.index import IndexParams, build_index
from streamrec.index.synthetic import clustered_catalog

has_gpu = faiss.get_num_gpus() > 0


@pytest.fixture(scope="module")
def small() -> tuple[list[str], np.ndarray]:
    return clustered_catalog(1000, 16, seed=1)


def test_settings_defaults_are_the_index_defaults() -> None:
    assert Settings().index_params == {
        k: v for k, v in IndexParams().to_dict().items() if k != "tombstone_filter"
    }


def test_auto_kind_is_exact_for_small_catalogs_and_ann_above(small) -> None:
    ids, vectors = small
    assert build_index(ids, vectors, device="cpu").kind == "flat"
    for large in ("hnsw", "ivf"):
        index = build_index(ids, vectors, device="cpu", flat_max_items=500, large_kind=large)
        assert index.kind == large


def test_unknown_parameter_and_bad_choices_are_named(small) -> None:
    ids, vectors = small
    with pytest.raises(TypeError, match="unknown index parameter.*hnsw_ef"):
        build_index(ids, vectors, hnsw_ef=10)
    with pytest.raises(ValueError, match="kind must be"):
        build_index(ids, vectors, kind="annoy")
    with pytest.raises(ValueError, match="metric must be"):
        build_index(ids, vectors, metric="cosine")
    with pytest.raises(ValueError, match="ivf index needs vectors"):
        build_index([], np.zeros((0, 16), np.float32), kind="ivf")


def test_empty_exact_index_searches_to_nothing_and_grows() -> None:
    index = build_index([], np.zeros((0, 4), np.float32))
    assert len(index) == 0 and index.search(np.ones((2, 4), np.float32), 3).ids == [[], []]
    index.upsert(["a"], np.ones((1, 4), np.float32))
    assert index.search(np.ones((1, 4), np.float32), 3).ids == [["a"]]


def test_l2_metric_scores_are_negated_squared_distances(small) -> None:
    ids, vectors = small
    index = build_index(ids, vectors, metric="l2", kind="flat")
    q = vectors[:3] + 0.01
    result = index.search(q, 10)
    d2 = ((q[:, None, :] - vectors[None, :, :]) ** 2).sum(-1)
    for row, got, scores in zip(d2, result.ids, result.scores, strict=True):
        best = np.argsort(row)[:10]
        assert got == [ids[i] for i in best]
        np.testing.assert_allclose(scores, -row[best], rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(has_gpu, reason="checks the error raised when no GPU is present")
def test_asking_for_a_gpu_without_one_is_a_clear_error(small) -> None:
    ids, vectors = small
    with pytest.raises(ValueError, match="faiss sees no GPU"):
        build_index(ids, vectors, device="gpu")
    assert build_index(ids, vectors).device == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not has_gpu, reason="no GPU visible to faiss")
def test_auto_device_uses_the_gpu_when_present(small) -> None:
    ids, vectors = small
    assert build_index(ids, vectors).device == "gpu"
    assert build_index(ids, vectors, flat_max_items=10).kind == "ivf"  # GPU ANN kind
    assert build_index(ids, vectors, kind="hnsw").device == "cpu"  # CPU-only kind stays
    with pytest.raises(ValueError, match="no GPU backend"):
        build_index(ids, vectors, kind="hnsw", device="gpu")
