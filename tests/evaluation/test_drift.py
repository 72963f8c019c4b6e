"""Drift adaptation on a synthetic world with recorded interest switches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamrec.config import Settings
from streamrec.data.split import split_stream
from streamrec.data.synth import SynthConfig, generate
from streamrec.evaluation.drift import DriftTruth, adaptation
from streamrec.evaluation.prequential import Vocab
from streamrec.evaluation.run import EvalOptions, evaluate
from streamrec.evaluation.variants import Variant
from streamrec.index import build_index
from streamrec.index.vectors import load_vectors, save_vectors


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
