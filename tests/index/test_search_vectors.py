"""``search(..., with_vectors=True)``: the hits' vectors come back with them (the engine's
features read them instead of looking every hit up again), on every backend."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from streamrec.index import build_index
from streamrec.index.synthetic import clustered_catalog, queries_near

KINDS = [
    pytest.param(("flat", "cpu"), id="flat-cpu"),
    pytest.param(("hnsw", "cpu"), id="hnsw-cpu"),
    pytest.param(("ivf", "cpu"), id="ivf-cpu"),
    pytest.param(("flat", "gpu"), id="flat-gpu", marks=pytest.mark.gpu),
    pytest.param(("ivf", "gpu"), id="ivf-gpu", marks=pytest.mark.gpu),
]


@pytest.mark.parametrize("backend", KINDS)
def test_search_returns_the_vectors_of_exactly_the_hits(backend: tuple[str, str]) -> None:
    kind, device = backend
    if device == "gpu" and faiss.get_num_gpus() == 0:
        pytest.skip("no GPU visible to faiss")
    ids, vectors = clustered_catalog(2000, 16, seed=3)
    index = build_index(ids, vectors, kind=kind, device=device)
    index.delete(ids[:50])  # tombstones in the mix
    moved = 2 * vectors[60:62]
    index.upsert(ids[60:62], moved)  # replaced rows: the new vector must come back
    queries = queries_near(vectors, 12, seed=4)
    # a list with a repeated id excludes it once (the old set semantics), a set as usual
    exclude: list[list[str] | set[str]] = [[ids[100], ids[100], ids[101]], {ids[102]}] * 6
    plain = index.search(queries, 30, exclude)
    result = index.search(queries, 30, exclude, with_vectors=True)
    assert plain.vectors is None and result.ids == plain.ids
    assert result.vectors is not None
    for hits, got, ex in zip(result.ids, result.vectors, exclude, strict=True):
        assert len(hits) == 30 and not set(hits) & set(ex)
        want, found = index.get_vectors(hits)
        assert found.all() and got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


def test_get_vectors_gives_zeros_for_unknown_and_deleted_ids() -> None:
    ids, vectors = clustered_catalog(300, 8, seed=5)
    index = build_index(ids, vectors, kind="flat", device="cpu")
    index.delete([ids[1]])
    got, found = index.get_vectors([ids[0], ids[1], "nope", ids[2]])
    assert found.tolist() == [True, False, False, True]
    np.testing.assert_array_equal(got[[0, 3]], vectors[[0, 2]])
    assert not got[[1, 2]].any()


def test_exclusions_filter_alike_through_the_bitmap_and_the_binary_search(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import streamrec.index.candidate as candidate

    ids, vectors = clustered_catalog(1500, 16, seed=6)
    index = build_index(ids, vectors, kind="flat", device="cpu")
    queries = queries_near(vectors, 20, seed=7)
    rng = np.random.default_rng(8)
    exclude = [{ids[r] for r in rng.choice(1500, size=300, replace=False)} for _ in range(20)]
    bitmap = index.search(queries, 100, exclude)  # 20 x 1500 rows: the bitmap path
    monkeypatch.setattr(candidate, "_BITMAP_MAX", 0)
    searched = index.search(queries, 100, exclude)
    assert bitmap.ids == searched.ids
    for hits, ex in zip(searched.ids, exclude, strict=True):
        assert len(hits) == 100 and not set(hits) & ex
