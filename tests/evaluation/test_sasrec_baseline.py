"""The SASRec baseline: a trained model from the artifacts, served with the live history,
never seeing the future; without a trained model the report says so."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from streamrec.config import Settings
from streamrec.evaluation.prequential import History, Stream, Vocab, replay
from streamrec.evaluation.run import EvalOptions, evaluate
from streamrec.evaluation.sasrec import SasrecBaseline, sasrec_baseline
from streamrec.index.vectors import load_vectors
from streamrec.models.sasrec_scorer import SasrecScorer
from streamrec.streams.core.artifacts import Artifacts
from streamrec.streams.recorded import read_events
from streamrec.streams.wire import Event

K = 10


def _replay(artifacts: Path, warmup: list[Event], test: list[Event]):  # type: ignore[no-untyped-def]
    ids, _ = load_vectors(artifacts / "item_vectors.npz")
    users, items, history = Vocab(), Vocab(ids), History()
    warm = Stream.encode(warmup, users, items)
    held = Stream.encode(test, users, items)
    system = sasrec_baseline(artifacts, history, items, K)
    assert isinstance(system, SasrecBaseline)
    result = replay(
        [system], held, warmup=warm, history=history, users=users, items=items,
        max_batch=64, max_k=K, track=lambda _: True,
    )  # fmt: skip
    return result.outcomes["sasrec"], held, history


def test_lists_before_a_position_do_not_change_when_every_later_event_does(
    sasrec_artifacts: Path, world: dict[str, Path]
) -> None:
    warmup, test = list(read_events(world["warmup"])), list(read_events(world["test"]))
    p = 500  # inside a micro-batch of 64: later events of the same batch change too
    rng = np.random.default_rng(11)
    ids, _ = load_vectors(sasrec_artifacts / "item_vectors.npz")
    changed = test[: p + 1] + [
        replace(e, item_id=ids[int(rng.integers(len(ids)))],
                action="click" if e.action == "save" else "save")
        for e in test[p + 1 :]
    ]  # fmt: skip
    base, _, _ = _replay(sasrec_artifacts, warmup, test)
    other, _, _ = _replay(sasrec_artifacts, warmup, changed)
    emitted = [pos for pos in base.traces if pos <= p]
    assert len(emitted) > 300
    for pos in emitted:
        assert base.traces[pos].tolist() == other.traces[pos].tolist(), pos
    assert (base.ranks[: p + 1] == other.ranks[: p + 1]).all()
    # and the perturbation did reach the lists after p (the check can fail)
    later = [pos for pos in base.traces if pos > p]
    assert any(base.traces[q].tolist() != other.traces[q].tolist() for q in later)


def test_ranks_the_whole_catalog_minus_seen_items_with_the_models_scores(
    sasrec_artifacts: Path, world: dict[str, Path]
) -> None:
    warmup, test = list(read_events(world["warmup"])), list(read_events(world["test"]))
    outcome, held, history = _replay(sasrec_artifacts, warmup, test)
    layout = Artifacts(sasrec_artifacts)
    scorer = SasrecScorer.load(layout.sasrec, layout.sasrec_meta)
    pos = max(outcome.traces)
    user = int(held.users[pos])
    mine = history.items[user][: history.items[user].index(int(held.items[pos])) + 1]
    listed = outcome.traces[pos]
    assert len(listed) == K and not set(listed.tolist()) & set(mine)
    # the list is the model's own top-K of unseen items, recomputed here by hand
    ids, _ = load_vectors(sasrec_artifacts / "item_vectors.npz")
    row = {item_id: r + 1 for r, item_id in enumerate(scorer.item_ids)}
    all_events = warmup + test
    user_id = all_events[len(warmup) + pos].user_id
    mine_events = [e for e in all_events[: len(warmup) + pos + 1] if e.user_id == user_id]
    window = np.asarray([row[e.item_id] for e in mine_events][-scorer.seq_len :])
    acts = np.asarray([2 if e.action == "save" else 1 for e in mine_events][-scorer.seq_len :])
    pad = scorer.seq_len - len(window)
    scores = scorer.scores(np.pad(window, (pad, 0))[None], np.pad(acts, (pad, 0))[None])[0]
    seen = {e.item_id for e in mine_events}
    best = sorted((i for i in scorer.item_ids if i not in seen), key=lambda i: -scores[row[i] - 1])[
        :K
    ]
    assert [ids[i] for i in listed.tolist()] == best


def test_evaluate_reports_sasrec_beside_the_baselines_when_trained(
    sasrec_artifacts: Path, world: dict[str, Path]
) -> None:
    options = EvalOptions(ks=(10,), variants=(), baselines=("popular", "sasrec"))
    ev = evaluate(world["test"], sasrec_artifacts, Settings(), options, warmup_path=world["warmup"])
    outcomes = ev.replay.outcomes
    assert list(outcomes) == ["popular", "sasrec"]
    hits = {n: float(((o.ranks >= 0) & (o.ranks < 10)).mean()) for n, o in outcomes.items()}
    # users stay in one item cluster of four: a model of their sequence beats popularity
    assert hits["sasrec"] > 1.5 * hits["popular"]


def test_evaluate_says_sasrec_was_not_trained_when_the_artifacts_have_none(
    world: dict[str, Path],
) -> None:
    options = EvalOptions(ks=(10,), variants=(), baselines=("popular", "sasrec"))
    ev = evaluate(
        world["test"], world["artifacts"], Settings(), options, warmup_path=world["warmup"]
    )
    assert list(ev.replay.outcomes) == ["popular"]
    assert ev.skipped["sasrec"].startswith("SASRec was not trained:")
    assert "sasrec.onnx" in ev.skipped["sasrec"]
