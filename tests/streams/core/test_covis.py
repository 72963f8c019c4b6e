"""Online co-visitation: pair counts within a user's window, scores scaled per user, and the
engine ranking its candidates by retrieval score + weight x co-visitation."""

from __future__ import annotations

import dataclasses
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


def test_pairs_count_within_the_window_and_scores_are_cosine_scaled_per_user() -> None:
    covis = CoVisitation(window=2, recent=1, power=0.5)
    covis.add(["a", "b", "c"], [[], ["a"], ["x", "a", "b"]])  # c pairs with a, b (x is too old)
    covis.add(["a"], [["c"]])  # a second a, after c
    # counts: a 2, b 1, c 1, x 0 (never acted on); pairs: a-b 1, a-c 2, b-c 1
    [ab, ac, ax] = covis.scores([["a"]], [["b", "c", "x"]])
    assert ax == 0.0
    assert ab == pytest.approx((1 / np.sqrt(2 * 1)) / (2 / np.sqrt(2 * 1)))  # over the best
    assert ac == pytest.approx(1.0)
    assert covis.scores([["nobody-knows"]], [["a"]]).tolist() == [0.0]


def test_newer_recent_items_weigh_more_and_unknown_candidates_score_zero() -> None:
    covis = CoVisitation(window=1, recent=2, recency=0.5)
    covis.add(["p", "q", "r", "s"], [[], ["p"], [], ["r"]])  # pairs p-q and r-s
    old_p_new_r = covis.scores([["p", "r"]], [["q", "s", "new"]])
    assert old_p_new_r.tolist() == pytest.approx([0.5, 1.0, 0.0])


def test_items_beyond_the_cap_are_not_counted() -> None:
    covis = CoVisitation(window=5, max_items=2)
    covis.add(["a", "b", "c"], [[], ["a"], ["a", "b"]])
    assert len(covis) == 2
    assert covis.scores([["a"]], [["b", "c"]]).tolist() == [1.0, 0.0]


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
    np.testing.assert_array_equal(
        built.scores(users, candidates), engine.covis.scores(users, candidates)
    )
    built.save(tmp_path / "covis.npz")
    loaded = CoVisitation.load(tmp_path / "covis.npz", window=6)
    np.testing.assert_array_equal(loaded.scores(users, candidates), built.scores(users, candidates))
    loaded.add(["new-2", "new-1"], [[], ["new-2"]])  # still grows after a load
    assert len(loaded) == len(built) + 2
    assert loaded.scores([["new-2"]], [["new-1"]]).tolist() == [1.0]


def test_the_loader_seeds_co_visitation_from_the_artifacts(
    tmp_path: Path, index: CandidateIndex, make_stream: Callable[..., list[Event]]
) -> None:
    from streamrec.config import Settings
    from streamrec.streams.core.loader import COVIS_FILE, load_engine

    index.save(tmp_path / "index")
    events = make_stream(200, users=4)
    CoVisitation.from_events(events).save(tmp_path / COVIS_FILE)
    settings = Settings(engine_device="cpu", engine_covis_weight=2.0, engine_reranker="")
    seeded = load_engine(tmp_path, settings)
    assert seeded.covis is not None and len(seeded.covis) == len({e.item_id for e in events})
    unseeded = load_engine(tmp_path, settings.model_copy(update={"engine_popular_seed": False}))
    assert unseeded.covis is not None and len(unseeded.covis) == 0
    assert load_engine(tmp_path, Settings(engine_device="cpu")).covis is None  # weight 0: off
