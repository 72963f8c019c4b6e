"""Drift adaptation on a synthetic world with recorded interest switches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamrec.config import Settings
from streamrec.data.split import split_stream
from streamrec.data.synth import SynthConfig, generate
from streamrec.evaluation.drift import DriftTruth, Switch, adaptation, median_interval
from streamrec.evaluation.prequential import Outcome, Replay, Stream, Vocab
from streamrec.evaluation.run import EvalOptions, evaluate
from streamrec.evaluation.variants import Variant
from streamrec.index import build_index
from streamrec.index.vectors import load_vectors, save_vectors
from streamrec.streams.wire import Event


@pytest.fixture(scope="module")
def drifting(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A world where half the users switch an interest; artifacts are its true vectors."""
    root = tmp_path_factory.mktemp("drift")
    world = root / "w.msgpack"
    config = SynthConfig(
        users=80, items=240, events=5000, clusters=8, drift_fraction=0.5, days=7, explore=0.0
    )
    generate(config, world)
    split = split_stream(world, 0.5)
    ids, vectors = load_vectors(root / "w.items.npz")
    artifacts = root / "artifacts"
    save_vectors(artifacts / "item_vectors.npz", ids, vectors)
    build_index(ids, vectors, kind="flat", device="cpu").save(artifacts / "index")
    return {"world": world, "train": split.train_path, "test": split.test_path, "art": artifacts}


def _one_switch_replay(lists: list[list[str]]) -> tuple[Replay, DriftTruth]:
    """User u switches to cluster 1 (items b*) at ts 10; its events: a0 (ts 5), then
    a1, a0 in its old interest's session, then b0, b1, a1; ``lists[j]`` is the list the
    system showed after event j."""
    items = Vocab(["a0", "a1", "b0", "b1"])
    users = Vocab()
    played = ["a0", "a1", "a0", "b0", "b1", "a1"]
    events = [
        Event(user_id="u", item_id=item, action="click", ts=ts, event_id=f"e{ts}")
        for item, ts in zip(played, [5, 11, 12, 13, 14, 15], strict=True)
    ]
    test = Stream.encode(events, users, items)
    traces = {j: np.array([items.index[i] for i in shown]) for j, shown in enumerate(lists)}
    n = len(events)
    outcome = Outcome("s", np.zeros(n, np.int32), np.zeros(n), np.zeros(1), np.zeros(4, bool), "")
    outcome.traces = traces
    replay = Replay(test, np.arange(n), {"s": outcome}, users, items, 1)
    return replay, DriftTruth([Switch("u", 10, 1)], np.array([0, 0, 1, 1]))


def test_adaptation_counts_from_the_switch_or_from_the_first_event_in_the_new_interest() -> None:
    old, new = ["a0", "a1"], ["b0", "b1"]
    # adapts right after the second event in the new interest (positions 3, 4)
    replay, truth = _one_switch_replay([old, old, old, old, new])
    from_switch = adaptation(replay, truth, share=0.5, top=2)["s"]
    from_evidence = adaptation(replay, truth, share=0.5, top=2, start="evidence")["s"]
    assert (from_switch.adapted, from_switch.events_to_adapt) == (1, [4])
    assert (from_evidence.adapted, from_evidence.events_to_adapt) == (1, [2])
    assert from_evidence.median_events == 2.0
    assert from_evidence.median_ci95 == (2.0, 2.0)
    assert from_evidence.share_curve[:2] == [0.0, 1.0]


def test_a_switch_the_user_never_acts_on_is_left_out_when_counting_from_evidence() -> None:
    replay, truth = _one_switch_replay([["a0", "a1"]] * 5)
    replay.test.items[3:5] = replay.items.index["a1"]  # no event in cluster 1 after all
    assert adaptation(replay, truth, share=0.5, top=2)["s"].switches == 1
    from_evidence = adaptation(replay, truth, share=0.5, top=2, start="evidence")["s"]
    assert (from_evidence.switches, from_evidence.adapted) == (0, 0)


def test_median_interval_brackets_the_median_and_reaches_never_when_most_may_not_adapt() -> None:
    low, high = median_interval(np.array([1.0, 2.0, 2.0, 3.0, 9.0]))
    assert 1.0 <= low <= 2.0 <= high <= 9.0
    low, high = median_interval(np.array([1.0, 2.0, np.inf, np.inf, np.inf]))
    assert low <= 2.0 and high == np.inf
    assert np.isnan(median_interval(np.array([]))[0])


def test_truth_maps_catalog_items_to_their_clusters(drifting) -> None:  # type: ignore[no-untyped-def]
    ids, _ = load_vectors(drifting["art"] / "item_vectors.npz")
    truth = DriftTruth.load(drifting["world"], Vocab(ids))
    assert truth.switches and (truth.item_cluster >= 0).all()
    assert set(np.unique(truth.item_cluster).tolist()) == set(range(8))


@pytest.mark.slow
def test_real_time_engine_adapts_to_a_switch_and_static_embeddings_do_not(drifting) -> None:  # type: ignore[no-untyped-def]
    options = EvalOptions(
        ks=(10,),
        variants=(Variant("decayed", "none"),),
        baselines=("static",),
        drift_world=drifting["world"],
    )
    ev = evaluate(
        drifting["test"], drifting["art"], Settings(), options, warmup_path=drifting["train"]
    )
    assert ev.drift is not None
    engine, static = ev.drift["decayed:none"], ev.drift["static"]
    assert engine.switches == static.switches > 5
    assert engine.adapted > static.adapted
    # the engine's top-10 moves toward the new interest as the user acts in it
    assert engine.share_curve[9] > engine.share_curve[0]
    # recomputing from the same replay gives the same answer
    again = adaptation(ev.replay, DriftTruth.load(drifting["world"], ev.replay.items), share=0.5)
    assert again["decayed:none"].events_to_adapt == engine.events_to_adapt
    # counted from the first event in the new interest: only switches the user acted on
    evidence = ev.drift_from_evidence
    assert evidence is not None
    assert 0 < evidence["decayed:none"].switches <= engine.switches
