"""Online co-visitation: pair counts within a user's window, scores scaled per user, and the
engine ranking its candidates by retrieval score + weight x co-visitation."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from streamrec.index import CandidateIndex
from streamrec.streams.core.config import EngineConfig
from streamrec.streams.core.covis import CoVisitation
from streamrec.streams.core.engine import Engine
from streamrec.streams.core.loader import rule_of
from streamrec.streams.core.popular import Popular
from streamrec.streams.core.state import UserState
from streamrec.streams.wire import Event

DAY_MS = 86_400_000


def _table(**params: object) -> CoVisitation:
    return CoVisitation(**{"half_life_s": 0.0, **params})  # type: ignore[arg-type]


def _stream(rng: random.Random, n: int, items: int, users: int) -> tuple[list[str], ...]:
    """A random stream as (items, previous) columns, the users' last 3 items before each."""
    history: dict[str, list[str]] = {}
    acted, previous = [], []
    for _ in range(n):
        mine = history.setdefault(f"u{rng.randrange(users)}", [])
        item = f"i{min(int(rng.paretovariate(1.2)), items) - 1}"  # Zipf-ish
        acted.append(item)
        previous.append(mine[-3:])
        mine.append(item)
    return acted, previous


def _pairs(items: list[str], previous: list[list[str]]) -> Counter[tuple[str, str]]:
    """Exact pair counts of a stream, both directions (window 3)."""
    counts: Counter[tuple[str, str]] = Counter()
    for item, before in zip(items, previous, strict=True):
        for other in set(before[-3:]) - {item}:
            counts[item, other] += 1
            counts[other, item] += 1
    return counts


def test_pairs_count_within_the_window_and_scores_are_cosine_scaled_per_user() -> None:
    covis = _table(window=2, recent=1, power=0.5)
    # c pairs with a, b (x is too old)
    covis.add(["a", "b", "c"], [[], ["a"], ["x", "a", "b"]], [0, 1, 2])
    covis.add(["a"], [["c"]], [3])  # a second a, after c
    # counts: a 2, b 1, c 1, x 0 (never acted on); pairs: a-b 1, a-c 2, b-c 1
    assert covis.neighbours_of("a") == {"b": 1.0, "c": 2.0}
    [ab, ac, ax] = covis.scores([["a"]], [["b", "c", "x"]])
    assert ax == 0.0
    assert ab == pytest.approx((1 / np.sqrt(2 * 1)) / (2 / np.sqrt(2 * 1)))  # over the best
    assert ac == pytest.approx(1.0)
    assert covis.scores([["nobody-knows"]], [["a"]]).tolist() == [0.0]


def test_newer_recent_items_weigh_more_and_unknown_candidates_score_zero() -> None:
    covis = _table(window=1, recent=2, recency=0.5)
    covis.add(["p", "q", "r", "s"], [[], ["p"], [], ["r"]], [0, 1, 2, 3])  # pairs p-q, r-s
    old_p_new_r = covis.scores([["p", "r"]], [["q", "s", "new"]])
    assert old_p_new_r.tolist() == pytest.approx([0.5, 1.0, 0.0])


def test_the_strongest_neighbours_are_the_best_scored_items_minus_skipped_and_unknown() -> None:
    covis = _table(neighbours=8)
    items, previous = _stream(random.Random(5), 3000, items=300, users=30)
    covis.add(items, previous, list(range(len(items))))
    histories = [items[j : j + 10] for j in range(0, 1000, 100)]
    catalog = sorted(set(items))
    gone = set(catalog[::7])  # "deleted from the index"
    allowed = set(catalog) - gone
    skip = [set(h[:3]) for h in histories]
    pairs = [(s, {h[5]}) for s, h in zip(skip, histories, strict=True)]
    picked = covis.strongest(histories, 12, pairs, allowed)
    scores = covis.scores(histories, [catalog] * len(histories)).reshape(len(histories), -1)
    for (ids, got), row, seen, h in zip(picked, scores, skip, histories, strict=True):
        best = sorted(
            (item for item, s in zip(catalog, row, strict=True) if s > 0),
            key=lambda item: -row[catalog.index(item)],
        )
        expected = [i for i in best if i not in seen and i != h[5] and i in allowed][:12]
        assert ids and set(ids) == set(expected)  # ties may swap places
        np.testing.assert_allclose(got, [row[catalog.index(i)] for i in ids], rtol=1e-9)
        assert list(got) == sorted(got, reverse=True) and got.max() <= 1.0
    [(ids, got)] = covis.strongest([["never-seen"]], 5, [(set(), set())], allowed)
    assert ids == [] and len(got) == 0


def test_items_beyond_the_cap_are_not_counted() -> None:
    covis = _table(window=5, max_items=2)
    covis.add(["a", "b", "c"], [[], ["a"], ["a", "b"]], [0, 1, 2])
    assert len(covis) == 2
    assert covis.scores([["a"]], [["b", "c"]]).tolist() == [1.0, 0.0]


def test_counts_are_symmetric_and_exact_while_no_row_is_full() -> None:
    items, previous = _stream(random.Random(1), 3000, items=40, users=30)
    covis = _table(neighbours=64)  # more than the 40 items: nothing is ever evicted
    for start in range(0, len(items), 97):
        chunk = items[start : start + 97]
        covis.add(chunk, previous[start : start + 97], [0] * len(chunk))
    held = {(a, b): w for a in set(items) for b, w in covis.neighbours_of(a).items()}
    assert held == dict(_pairs(items, previous))


def test_a_full_row_keeps_its_strongest_counts_never_more_than_the_true_ones() -> None:
    items, previous = _stream(random.Random(2), 4000, items=300, users=40)
    exact, bounded = _table(neighbours=512), _table(neighbours=6)
    for start in range(0, len(items), 50):
        batch = items[start : start + 50], previous[start : start + 50]
        held = {i: bounded.neighbours_of(i) for i in set(batch[0]) | set(sum(batch[1], []))}
        exact.add(*batch, [0] * 50)
        bounded.add(*batch, [0] * 50)
        added = _pairs(*batch)
        for item, row in held.items():  # each row: the top 6 of what it held + what came
            pool = Counter(row) + Counter({b: n for (a, b), n in added.items() if a == item})
            kept = bounded.neighbours_of(item)
            assert sorted(kept.values()) == sorted(pool.values())[-6:]
            assert all(pool[b] == n for b, n in kept.items())
    for item in set(items):
        row, truth = bounded.neighbours_of(item), exact.neighbours_of(item)
        assert len(row) <= 6 and all(w <= truth[k] for k, w in row.items())
    hub = Counter(items).most_common(1)[0][0]  # the top partners of the most acted-on item
    strongest = sorted(exact.neighbours_of(hub).values())[-3:]
    assert sorted(bounded.neighbours_of(hub).values())[-3:] == strongest


def test_a_strong_pair_is_not_evicted_by_a_tail_of_single_ones() -> None:
    covis = _table(window=1, neighbours=3)
    for j, partner in enumerate(["s1", "s1", "s1", "s2", "s2", "s3", "s3"]):
        covis.add(["hub", partner], [[], ["hub"]], [2 * j, 2 * j + 1])
    for j in range(20):  # twenty partners seen once each: weaker than every held pair
        covis.add(["hub", f"tail{j}"], [[], ["hub"]], [100 + j, 100 + j])
    assert covis.neighbours_of("hub") == {"s1": 3.0, "s2": 2.0, "s3": 2.0}
    crowd = [f"tail{j}" for j in range(3)]  # one tail pair thrice in a batch beats s2 / s3
    covis.add(["hub", "new"] * 3 + crowd, [[], ["hub"]] * 3 + [[]] * 3, [200] * 9)
    assert covis.neighbours_of("hub") == {"s1": 3.0, "new": 3.0, "s2": 2.0} or (
        covis.neighbours_of("hub") == {"s1": 3.0, "new": 3.0, "s3": 2.0}
    )


def test_counts_decay_by_event_time_and_fresh_pairs_replace_faded_ones() -> None:
    covis = CoVisitation(window=1, neighbours=2, half_life_s=86_400.0)
    for partner in ("old1", "old1", "old1", "old2", "old2"):
        covis.add(["hub", partner], [[], ["hub"]], [0, 0])
    assert covis.neighbours_of("hub") == {"old1": 3.0, "old2": 2.0}
    covis.add(["x"], [[]], [DAY_MS])  # one half-life later
    assert covis.neighbours_of("hub") == pytest.approx({"old1": 1.5, "old2": 1.0})
    assert covis.count_of("hub") == pytest.approx(2.5)
    covis.add(["hub", "fresh"], [[], ["hub"]], [3 * DAY_MS, 3 * DAY_MS])  # old2 now 0.25
    assert covis.neighbours_of("hub") == pytest.approx({"old1": 0.375, "fresh": 1.0})
    covis.add(["y"], [[]], [20 * DAY_MS])
    covis.add(["z"], [[]], [36 * DAY_MS])  # 32 half-lives past the anchor: rescaled
    assert covis.neighbours_of("hub")["fresh"] == pytest.approx(2.0**-33)
    fresh, old1 = covis.scores([["hub"]], [["fresh", "old1"]])  # cosine: 1/1, 0.375/0.375^.5
    assert (fresh, old1) == pytest.approx((1.0, 0.375**0.5))


def test_the_table_survives_bytes_and_goes_on_as_if_never_saved() -> None:
    items, previous = _stream(random.Random(3), 2000, items=200, users=20)
    ts = [j * 3_600_000 for j in range(len(items))]  # hourly, half-life 1 day
    params = {"neighbours": 8, "half_life_s": 86_400.0}
    kept = CoVisitation(**params)  # type: ignore[arg-type]
    kept.add(items[:1000], previous[:1000], ts[:1000])
    restored = CoVisitation.from_bytes(kept.to_bytes(), **params)
    assert len(restored) == len(kept) and restored.now == kept.now
    for table in (kept, restored):
        table.add(items[1000:], previous[1000:], ts[1000:])
    users = [items[j : j + 10] for j in range(0, 500, 50)]
    candidates = [sorted(set(items))] * len(users)
    np.testing.assert_allclose(
        restored.scores(users, candidates), kept.scores(users, candidates), rtol=1e-5
    )
    hub = Counter(items).most_common(1)[0][0]
    assert restored.neighbours_of(hub) == pytest.approx(kept.neighbours_of(hub), rel=1e-5)
    narrow = CoVisitation.from_bytes(kept.to_bytes(), neighbours=3, half_life_s=86_400.0)
    assert (
        narrow.neighbours_of(hub)
        == pytest.approx(  # a narrower row: the strongest 3
            dict(sorted(kept.neighbours_of(hub).items(), key=lambda kv: -kv[1])[:3]), rel=1e-6
        )
    )


def test_the_old_dense_file_is_refused_with_a_reason(tmp_path: Path) -> None:
    np.savez(tmp_path / "covis.npz", ids=np.array(["a"]), pairs=np.zeros((1, 1)), counts=[1.0])
    with pytest.raises(ValueError, match="train again"):
        CoVisitation.load(tmp_path / "covis.npz")


def test_memory_is_bounded_by_construction() -> None:
    covis = _table(neighbours=4, max_items=256)
    items, previous = _stream(random.Random(4), 5000, items=100_000, users=50)
    unique = [f"{i}-{j}" for j, i in enumerate(items)]  # 5000 distinct items
    covis.add(unique, [[f"{p}-x" for p in prior] for prior in previous], [0] * len(items))
    assert len(covis) == 256
    assert covis.bytes_per_item == 8 * 4 + 16
    assert covis.nbytes <= 256 * covis.bytes_per_item
    hub = Counter(items).most_common(1)[0][0]
    assert all(len(covis.neighbours_of(i)) <= 4 for i in (hub, unique[0], unique[-1]))


@pytest.fixture
def covis_engine(index: CandidateIndex) -> Callable[..., Engine]:
    def make(weight: float, **fields: object) -> Engine:
        config = dataclasses.replace(
            EngineConfig(candidates=50, k=10, covis_weight=weight), **fields
        )
        covis = CoVisitation(window=config.covis_window, recent=config.covis_recent)
        popular = Popular(config.popular_half_life_s, config.popular_top)
        return Engine(index, None, rule_of(config), popular, config, clock=lambda: 0, covis=covis)

    return make


def test_the_engine_lifts_what_other_users_did_next(
    covis_engine: Callable[..., Engine], make_stream: Callable[..., list[Event]]
) -> None:
    events = make_stream(200, users=8)
    plain, blended = covis_engine(0.0), covis_engine(100.0)
    states_a: dict[str, UserState] = {}
    states_b: dict[str, UserState] = {}
    plain.process(events, states_a)
    blended.process(events, states_b)
    # Many users went from the probe item to one partner item: the blend puts it first.
    probe = "item0"
    [first] = plain.process([Event("p0", "probe-user", probe, "click", 10**12)], {})
    partner = first.items[5]  # a retrieval candidate, but not the best one
    crowd = [Event(f"c{j}a", f"fan{j}", probe, "click", 10**12 + j) for j in range(5)]
    crowd += [Event(f"c{j}b", f"fan{j}", partner, "click", 10**12 + j + 1) for j in range(5)]
    for engine in (plain, blended):
        engine.process(crowd, {})
    [without] = plain.process([Event("p1", "probe-2", probe, "click", 10**12 + 99)], {})
    [with_covis] = blended.process([Event("p1", "probe-2", probe, "click", 10**12 + 99)], {})
    assert without.items[5] == partner and with_covis.items[0] == partner
    assert with_covis.scores == sorted(with_covis.scores, reverse=True)


def test_co_visitation_of_a_batch_is_counted_only_after_its_lists_at_batch_start(
    covis_engine: Callable[..., Engine],
) -> None:
    engine = covis_engine(100.0, popular_as_of="batch_start")
    batch = [Event("a", "u", "item0", "click", 0), Event("b", "u", "item6", "click", 1)]
    engine.process(batch, {})
    assert engine.covis is not None
    assert engine.covis.scores([["item0"]], [["item6"]]).tolist() == [1.0]  # counted after
    fresh = covis_engine(100.0, popular_as_of="batch_start")
    recs = fresh.process(batch, {})
    plain = covis_engine(0.0).process(batch, {})
    assert recs[0].items == plain[0].items  # nothing counted yet when item0's list was made


def test_from_events_equals_what_the_engine_keeps_and_survives_a_file(
    covis_engine: Callable[..., Engine],
    make_stream: Callable[..., list[Event]],
    tmp_path: Path,
) -> None:
    events = make_stream(300, users=5)
    engine = covis_engine(4.0, covis_window=6)
    engine.apply(events, {})
    built = CoVisitation.from_events(events, window=6)
    assert engine.covis is not None
    users = [[e.item_id for e in events[-12:]]]
    candidates = [[f"item{i}" for i in range(0, 600, 7)]]
    np.testing.assert_allclose(
        built.scores(users, candidates), engine.covis.scores(users, candidates), rtol=1e-6
    )
    built.save(tmp_path / "covis.npz")
    loaded = CoVisitation.load(tmp_path / "covis.npz", window=6)
    np.testing.assert_allclose(
        loaded.scores(users, candidates), built.scores(users, candidates), rtol=1e-6
    )
    loaded.add(["new-2", "new-1"], [[], ["new-2"]], [events[-1].ts] * 2)  # still grows after a load
    assert len(loaded) == len(built) + 2
    assert loaded.scores([["new-2"]], [["new-1"]]).tolist() == [1.0]


def test_the_loader_seeds_co_visitation_from_the_artifacts(
    tmp_path: Path, index: CandidateIndex, make_stream: Callable[..., list[Event]]
) -> None:
    from streamrec.config import Settings
    from streamrec.streams.core.artifacts import Artifacts
    from streamrec.streams.core.loader import load_engine

    index.save(tmp_path / "index")
    events = make_stream(200, users=4)
    CoVisitation.from_events(events).save(Artifacts(tmp_path).covis)
    settings = Settings(engine_device="cpu", engine_covis_weight=2.0, engine_reranker="")
    seeded = load_engine(tmp_path, settings)
    assert seeded.covis is not None and len(seeded.covis) == len({e.item_id for e in events})
    unseeded = load_engine(tmp_path, settings.model_copy(update={"engine_popular_seed": False}))
    assert unseeded.covis is not None and len(unseeded.covis) == 0
    assert load_engine(tmp_path, Settings(engine_device="cpu")).covis is None  # weight 0: off


def test_the_covis_feature_is_the_users_co_visitation_and_0_without_statistics(
    covis_engine: Callable[..., Engine], make_engine: Callable[..., Engine]
) -> None:
    from streamrec.streams.core.features import COVIS_FEATURE, FEATURE_NAMES

    probe = [Event("p", "probe", "item0", "click", 10**6)]
    (first,) = make_engine().prepare(probe, {})
    partner = first.ids[5]  # a candidate of the probe's list (the fans leave it one)
    crowd = [Event(f"c{j}a", f"fan{j}", "item0", "click", 1000 * j) for j in range(5)]
    crowd += [Event(f"c{j}b", f"fan{j}", partner, "click", 1000 * j + 1) for j in range(5)]
    kept, without = covis_engine(0.0), make_engine()  # weight 0: the feature alone reads it
    sets = []
    for engine in (kept, without):
        engine.apply(crowd, {})
        (cset,) = engine.prepare(probe, {})
        sets.append(cset)
    col = FEATURE_NAMES.index(COVIS_FEATURE)
    with_covis, plain = sets
    assert with_covis.ids == plain.ids and partner in with_covis.ids
    assert kept.covis is not None
    expected = kept.covis.scores([["item0"]], [with_covis.ids])
    np.testing.assert_allclose(with_covis.features[:, col], expected, rtol=1e-6)
    assert with_covis.features[with_covis.ids.index(partner), col] == pytest.approx(1.0)
    assert (plain.features[:, col] == 0).all()  # no statistics: the feature is 0
    others = np.arange(len(FEATURE_NAMES)) != col
    np.testing.assert_array_equal(with_covis.features[:, others], plain.features[:, others])


def test_the_loader_keeps_co_visitation_for_a_reranker_that_reads_it_at_weight_0(
    tmp_path: Path, index: CandidateIndex, reranker_onnx: Path
) -> None:
    import shutil

    from streamrec.config import Settings
    from streamrec.streams.core.loader import load_engine

    index.save(tmp_path / "index")
    shutil.copy(reranker_onnx, tmp_path / "reranker.onnx")
    settings = Settings(engine_device="cpu", engine_covis_weight=0.0)
    engine = load_engine(tmp_path, settings)
    assert engine.scorer is not None and engine.covis is not None
    assert engine.covis in engine.stats.statistics  # counted at every commit
    bare = load_engine(tmp_path, settings.model_copy(update={"engine_reranker": ""}))
    assert bare.covis is None  # retrieval order reads nothing of it
