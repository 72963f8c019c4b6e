"""The CandidateIndex contract, checked against every available backend: every CPU kind,
and the GPU kinds (marked ``gpu``) where faiss sees a GPU."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from streamrec.index import CandidateIndex, build_index, load_index
from streamrec.index.synthetic import clustered_catalog, queries_near


@dataclass(frozen=True)
class Flavour:
    kind: str
    device: str
    tombstone_filter: str = "auto"

    @property
    def exact(self) -> bool:
        return self.kind == "flat"


FLAVOURS = [
    pytest.param(Flavour("flat", "cpu"), id="flat-cpu"),
    pytest.param(Flavour("hnsw", "cpu"), id="hnsw-cpu"),
    pytest.param(Flavour("ivf", "cpu"), id="ivf-cpu"),
    # auto picks over-fetch past tombstones for flat and GPU, a selector for CPU HNSW/IVF:
    # run the other path too (IVF over-fetch is what GPU IVF does)
    pytest.param(Flavour("flat", "cpu", "selector"), id="flat-cpu-selector"),
    pytest.param(Flavour("ivf", "cpu", "overfetch"), id="ivf-cpu-overfetch"),
    pytest.param(Flavour("flat", "gpu"), id="flat-gpu", marks=pytest.mark.gpu),
    pytest.param(Flavour("ivf", "gpu"), id="ivf-gpu", marks=pytest.mark.gpu),
]

Build = Callable[..., CandidateIndex]


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> Flavour:
    f: Flavour = request.param
    if f.device == "gpu" and faiss.get_num_gpus() == 0:
        pytest.skip("no GPU visible to faiss")
    return f


@pytest.fixture
def build(flavour: Flavour) -> Build:
    """``build(ids, vectors, **params)`` for the backend under test."""

    def _build(ids: Sequence[str], vectors: np.ndarray, **params: Any) -> CandidateIndex:
        params.setdefault("tombstone_filter", flavour.tombstone_filter)
        return build_index(ids, vectors, kind=flavour.kind, device=flavour.device, **params)

    return _build


@pytest.fixture(scope="session")
def catalog() -> tuple[list[str], np.ndarray]:
    """A small clustered catalog (fast to build with every kind)."""
    return clustered_catalog(3000, 32, seed=7)


@pytest.fixture(scope="session")
def queries(catalog: tuple[list[str], np.ndarray]) -> np.ndarray:
    return queries_near(catalog[1], 40, seed=8)


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """True top-k rows by inner product, computed without faiss."""
    sims = queries @ vectors.T
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


K = 50


def _recall(found: list[list[str]], truth: np.ndarray, ids: list[str]) -> float:
    hits = sum(len(set(f) & {ids[r] for r in t}) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def _assert_well_formed(result, k: int) -> None:
    for ids, scores in zip(result.ids, result.scores, strict=True):
        assert len(ids) == k == len(scores)
        assert len(set(ids)) == k, "an item came back twice"
        assert np.all(np.diff(scores) <= 1e-5), "scores are not best first"


def test_results_match_exact_search(build: Build, flavour: Flavour, catalog, queries) -> None:
    ids, vectors = catalog
    index = build(ids, vectors)
    result = index.search(queries, K)
    truth = brute_force(vectors, queries, K)
    _assert_well_formed(result, K)
    if flavour.exact:
        for got, want, scores, q in zip(result.ids, truth, result.scores, queries, strict=True):
            want_scores = vectors[want] @ q
            np.testing.assert_allclose(scores, want_scores, rtol=1e-4, atol=1e-5)
            # ids may differ only inside ties
            assert [ids[r] for r in want if vectors[r] @ q > want_scores[-1] + 1e-5] == [
                g for g, s in zip(got, scores, strict=True) if s > want_scores[-1] + 1e-5
            ]
    else:
        assert _recall(result.ids, truth, ids) >= 0.9


def test_exclusions_never_returned_and_k_still_filled(build: Build, catalog, queries) -> None:
    ids, vectors = catalog
    index = build(ids, vectors)
    truth = brute_force(vectors, queries, 300)
    # exclude a query's own best hits (the hardest case), of growing size, plus unknown ids
    exclude = [{ids[r] for r in truth[i, : 5 * i]} | {"not-an-item"} for i in range(len(queries))]
    result = index.search(queries, K, exclude=exclude)
    _assert_well_formed(result, K)
    for got, ex in zip(result.ids, exclude, strict=True):
        assert not set(got) & ex


@pytest.mark.parametrize("bitmap_max", [1 << 23, 40 * 3000 - 1, 0], ids=["rows", "columns", "keys"])
def test_every_exclusion_filter_gives_the_same_results(
    build: Build, catalog, queries, monkeypatch: pytest.MonkeyPatch, bitmap_max: int
) -> None:
    """The three ways a batch's exclusions are filtered (a (query, row) bitmap, a (query,
    excluded-row column) bitmap through the row scratch, sorted keys) agree, and the
    scratch is handed back clean."""
    import streamrec.index.candidate as candidate

    ids, vectors = catalog
    index = build(ids, vectors)
    truth = brute_force(vectors, queries, 300)
    exclude = [{ids[r] for r in truth[i, : 5 * i : 2]} | {ids[i]} for i in range(len(queries))]
    expected = index.search(queries, K, exclude=exclude)
    monkeypatch.setattr(candidate, "_BITMAP_MAX", bitmap_max)
    for _ in range(2):  # the second search starts from the first's scratch
        got = index.search(queries, K, exclude=exclude)
        assert got.ids == expected.ids
    assert (index._seg.column_of_row() == -1).all()


def test_exclusion_larger_than_the_ann_candidates_still_fills_k(build: Build, catalog) -> None:
    ids, vectors = catalog
    index = build(ids, vectors)
    q = vectors[:2]
    truth = brute_force(vectors, q, 2000)
    exclude = [{ids[r] for r in truth[0]}, set()]
    result = index.search(q, K, exclude=exclude)
    _assert_well_formed(result, K)
    assert not set(result.ids[0]) & exclude[0]
    assert index.stats.retries + index.stats.exact_fallbacks > 0  # it took more than one pass


def test_small_catalog_returns_everything_it_can(build: Build, flavour: Flavour) -> None:
    rng = np.random.default_rng(3)
    n = 200 if flavour.kind == "ivf" else 30  # IVF needs some points to train
    ids = [f"s{i}" for i in range(n)]
    vectors = rng.standard_normal((n, 8)).astype(np.float32)
    index = build(ids, vectors)
    result = index.search(vectors[:3], n + 50, exclude=[set(), {"s0", "s1"}, set(ids)])
    assert [len(r) for r in result.ids] == [n, n - 2, 0]
    assert sorted(result.ids[0]) == sorted(ids)


def test_upsert_is_visible_to_the_next_search(build: Build, catalog, queries) -> None:
    ids, vectors = catalog
    index = build(ids, vectors)
    index.upsert(["fresh"], queries[:1] * 3.0)
    assert "fresh" in index and len(index) == len(ids) + 1
    assert index.search(queries[:1], K).ids[0][0] == "fresh"
    # replacing an existing item moves it; it never comes back twice
    index.upsert([ids[0]], queries[1:2] * 3.0)
    got = index.search(queries[1:2], K).ids[0]
    assert got[0] == ids[0] and got.count(ids[0]) == 1
    vec, found = index.get_vectors([ids[0], "missing"])
    np.testing.assert_allclose(vec[0], queries[1] * 3.0, rtol=1e-6)
    assert found.tolist() == [True, False] and not vec[1].any()
    assert len(index) == len(ids) + 1


def test_deleted_items_are_never_returned(build: Build, catalog, queries) -> None:
    ids, vectors = catalog
    index = build(ids, vectors, compact_min_dead=10**9)  # keep tombstones in place
    before = index.search(queries, K).ids
    gone = sorted({i for row in before for i in row[:20]})
    index.delete(gone)
    assert len(index) == len(ids) - len(gone) and index.tombstones == len(gone)
    assert all(g not in index for g in gone)
    after = index.search(queries, K)
    _assert_well_formed(after, K)
    assert not {i for row in after.ids for i in row} & set(gone)
    _, found = index.get_vectors(gone[:3])
    assert not found.any()


def test_compaction_drops_tombstones_and_keeps_contents(build: Build, catalog, queries) -> None:
    ids, vectors = catalog
    index = build(ids, vectors, compact_min_dead=10**9)
    index.delete(ids[:1000])
    index.upsert(ids[1000:1100], vectors[1000:1100] * 0.5)
    expected = index.search(queries, K).ids
    index.compact()
    assert index.tombstones == 0 and len(index) == len(ids) - 1000
    result = index.search(queries, K)
    _assert_well_formed(result, K)
    assert not {i for row in result.ids for i in row} & set(ids[:1000])
    overlap = np.mean([len(set(a) & set(b)) / K for a, b in zip(expected, result.ids, strict=True)])
    assert overlap >= 0.9
    vec, _ = index.get_vectors([ids[1000]])
    np.testing.assert_allclose(vec[0], vectors[1000] * 0.5, rtol=1e-6)


def test_automatic_compaction_after_many_deletes(build: Build, catalog) -> None:
    ids, vectors = catalog
    index = build(ids, vectors, compact_min_dead=100, compact_dead_ratio=0.1)
    index.delete(ids[:400])  # 400 dead >= max(100, 0.1 x 2600): compaction starts
    index.wait_for_compaction()
    assert index.tombstones == 0 and len(index) == len(ids) - 400
    assert index.stats.compactions == 1 and index.stats.last_compaction_s > 0
    assert ids[0] not in index and ids[400] in index


def test_persistence_round_trips(build: Build, catalog, queries, tmp_path: Path) -> None:
    ids, vectors = catalog
    index = build(ids, vectors, compact_min_dead=10**9)
    index.delete(ids[:10])
    index.upsert(["fresh"], queries[:1])
    index.save(tmp_path / "idx")
    loaded = load_index(tmp_path / "idx", device=index.device, dim=32, metric="ip")
    assert (loaded.kind, loaded.device, loaded.metric, loaded.dim) == (
        index.kind,
        index.device,
        "ip",
        32,
    )
    assert len(loaded) == len(index) and loaded.tombstones == index.tombstones
    assert loaded.search(queries, K).ids == index.search(queries, K).ids
    a, fa = loaded.get_vectors(["fresh", ids[0], ids[20]])
    b, fb = index.get_vectors(["fresh", ids[0], ids[20]])
    np.testing.assert_array_equal(a, b)
    assert fa.tolist() == fb.tolist() == [True, False, True]
    loaded.upsert(["later"], queries[1:2] * 3)  # a loaded index stays mutable
    assert loaded.search(queries[1:2], 1).ids == [["later"]]
    with pytest.raises(ValueError, match="dimension 32, expected 64"):
        load_index(tmp_path / "idx", dim=64)
    with pytest.raises(ValueError, match="metric 'ip', expected 'l2'"):
        load_index(tmp_path / "idx", metric="l2")


def test_bad_input_gives_clear_errors(build: Build, catalog) -> None:
    ids, vectors = catalog
    nan = vectors[:3].copy()
    nan[1, 4] = np.nan
    with pytest.raises(ValueError, match="duplicate item id"):
        build(["a", "b", "a"], vectors[:3])
    with pytest.raises(ValueError, match="NaN or infinite"):
        build(["a", "b", "c"], nan)
    index = build(ids, vectors)
    with pytest.raises(ValueError, match="dimension 16 but the index has dimension 32"):
        index.upsert(["x"], np.zeros((1, 16), np.float32))
    with pytest.raises(ValueError, match="dimension 16 but the index has dimension 32"):
        index.search(np.zeros((1, 16), np.float32), 5)
    with pytest.raises(ValueError, match="NaN or infinite"):
        index.upsert(["a", "b", "c"], nan)
    with pytest.raises(ValueError, match="NaN or infinite"):
        index.search(nan, 5)
    with pytest.raises(ValueError, match="duplicate item id.*'x'"):
        index.upsert(["x", "x"], vectors[:2])
    with pytest.raises(ValueError, match="one vector per id"):
        index.upsert(["x", "y"], vectors[:3])
    with pytest.raises(KeyError, match="unknown item id.*'nope'"):
        index.delete([ids[0], "nope"])
    assert ids[0] in index, "a failed delete must delete nothing"
    assert len(index) == len(ids)


def test_concurrent_search_and_mutation(build: Build, catalog, queries) -> None:
    ids, vectors = catalog
    index = build(ids, vectors, compact_min_dead=200, compact_dead_ratio=0.05)
    deleted: set[str] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        try:
            while not stop.is_set():
                before = set(deleted)  # deletes completed before this search started
                result = index.search(queries, K)
                assert all(len(r) == K for r in result.ids)
                leaked = {i for row in result.ids for i in row} & before
                assert not leaked, f"deleted items returned: {sorted(leaked)[:5]}"
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    def mutator() -> None:
        try:
            rng = np.random.default_rng(0)
            victims = [i for i in ids if i != ids[0]]
            for step in range(30):
                batch = victims[step * 40 : (step + 1) * 40]
                index.delete(batch)
                deleted.update(batch)
                new = [f"n{step}-{j}" for j in range(20)]
                index.upsert(new, rng.standard_normal((20, 32)).astype(np.float32))
                index.upsert([ids[0]], vectors[:1] * (1 + step))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(2)]
    for t in threads:
        t.start()
    mutator()
    index.wait_for_compaction()
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(index) == len(ids) - 1200 + 600
    final = index.search(queries, K)
    assert not {i for row in final.ids for i in row} & deleted


def test_mutations_during_a_background_compaction_are_replayed(catalog, queries) -> None:
    ids, vectors = catalog
    index = build_index(ids, vectors, kind="hnsw", compact_min_dead=10**9)
    index.delete(ids[:100])
    index._compact_soon()  # what crossing the threshold does
    deadline = time.monotonic() + 30
    while not index.compacting and time.monotonic() < deadline:
        time.sleep(0.0005)
    assert index.compacting, "the background compaction never started"
    index.delete(ids[100:200])
    index.upsert(["during"], queries[:1] * 3)
    index.upsert([ids[300]], queries[1:2] * 3)
    index.wait_for_compaction()
    assert index.stats.compactions == 1
    assert len(index) == len(ids) - 200 + 1
    assert ids[150] not in index and "during" in index
    got = index.search(queries[:2], K).ids
    assert got[0][0] == "during" and got[1][0] == ids[300]
    assert not {i for row in got for i in row} & set(ids[:200])
    assert index.tombstones == 101  # replayed deletes + the replaced row: dead in the new one
