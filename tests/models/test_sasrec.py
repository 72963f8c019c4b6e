"""SASRec: learns order (not just the bag of items), is causal, and ONNX computes the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamrec.models.export import check_parity, export_onnx
from streamrec.models.sasrec import (
    LastScores,
    Sasrec,
    SasrecConfig,
    fit_sasrec,
    predict_last,
    training_windows,
)
from streamrec.models.sasrec_scorer import CLICK, SAVE, left_pad, ranks_of_targets

N_ITEMS = 40


def cycle_world(users: int, length: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each user walks a fixed random cycle over the items from a random start: the next
    item is a function of the previous one. The set of items seen so far is an arc of the
    cycle whose two ends both border an unseen item, so anything that looks only at that
    set (a bag of items, in any order) picks the true next item at most half the time."""
    rng = np.random.default_rng(seed)
    cycle = rng.permutation(N_ITEMS) + 1  # item rows 1..N
    items, actions = [], []
    for _ in range(users):
        start = int(rng.integers(N_ITEMS))
        items.append(cycle[(start + np.arange(length)) % N_ITEMS].astype(np.int64))
        actions.append(rng.choice([CLICK, SAVE], length).astype(np.int64))
    return items, actions


def windows(seqs: list[np.ndarray], cuts: list[int], length: int) -> np.ndarray:
    """Each sequence's first ``cuts[u]`` values as a left-padded window."""
    return np.stack([left_pad(s[:c], length) for s, c in zip(seqs, cuts, strict=True)])


SMALL = SasrecConfig(
    seq_len=12, dim=32, blocks=1, heads=2, dropout=0.0, lr=5e-3, batch=32, max_epochs=40,
    patience=40, valid_events=200,
)  # fmt: skip


@pytest.fixture(scope="module")
def fitted() -> tuple[object, list[np.ndarray], list[np.ndarray]]:
    torch.manual_seed(0)
    items, actions = cycle_world(users=160, length=14, seed=1)
    result = fit_sasrec(items, actions, [11] * len(items), N_ITEMS, SMALL)
    return result, items, actions


def test_learns_the_next_item_from_the_order_which_a_bag_of_items_cannot(fitted) -> None:  # type: ignore[no-untyped-def]
    result, _, _ = fitted
    fresh_items, fresh_actions = cycle_world(users=100, length=14, seed=1)  # same cycle
    # new users, each cut at a random point: the model must continue their walk
    rng = np.random.default_rng(5)
    cuts = rng.integers(2, 13, len(fresh_items)).tolist()
    scores = predict_last(
        result.model,
        windows(fresh_items, cuts, SMALL.seq_len),
        windows(fresh_actions, cuts, SMALL.seq_len),
    )
    targets = np.asarray([s[c] for s, c in zip(fresh_items, cuts, strict=True)])
    seen = [s[:c] for s, c in zip(fresh_items, cuts, strict=True)]
    ranks = ranks_of_targets(scores, targets, seen)
    assert (ranks == 0).mean() > 0.9  # a bag-of-items model is right at most half the time
    # the fit kept its best epoch and wrote a curve with the figures early stopping reads
    best = result.curve[result.best_epoch - 1]
    assert best["ndcg@10"] == max(p["ndcg@10"] for p in result.curve)
    assert {"epoch", "loss", "hr@10", "ndcg@10", "seconds"} <= set(best)
    assert result.curve[-1]["loss"] < result.curve[0]["loss"]


def test_stops_early_once_validation_stops_improving() -> None:
    items, actions = cycle_world(users=40, length=10, seed=2)
    config = SasrecConfig(seq_len=8, dim=8, blocks=1, lr=1e-9, max_epochs=50, patience=2,
                          valid_events=50)  # fmt: skip
    result = fit_sasrec(items, actions, [8] * len(items), N_ITEMS, config)
    # a learning rate of ~0 never improves on epoch 1: two more epochs, then stop
    assert len(result.curve) < config.max_epochs
    assert len(result.curve) - result.best_epoch == config.patience


def test_a_positions_output_does_not_depend_on_later_events() -> None:
    torch.manual_seed(0)
    model = Sasrec(N_ITEMS, SasrecConfig(seq_len=10, dim=16, blocks=2, heads=2)).eval()
    rng = np.random.default_rng(3)
    items = torch.from_numpy(rng.integers(1, N_ITEMS + 1, (4, 10)))
    items[1, :3] = 0  # a left-padded window too
    actions = torch.from_numpy(rng.integers(1, 3, (4, 10)))
    actions[1, :3] = 0
    t = 6
    later_items, later_actions = items.clone(), actions.clone()
    later_items[:, t + 1 :] = torch.from_numpy(rng.integers(1, N_ITEMS + 1, (4, 10 - t - 1)))
    later_actions[:, t + 1 :] = 3 - later_actions[:, t + 1 :]
    with torch.no_grad():
        before = model(items, actions)
        after = model(later_items, later_actions)
    assert torch.allclose(before[:, : t + 1], after[:, : t + 1], atol=1e-6)
    assert not torch.allclose(before[:, t + 1 :], after[:, t + 1 :], atol=1e-3)
    # padding is no event: a padded window scores like its unpadded tail
    with torch.no_grad():
        tail = model(items[1:2, 3:], actions[1:2, 3:])
    assert torch.allclose(before[1:2, 3:], tail, atol=1e-5)


def test_onnx_scores_match_torch_at_other_batch_sizes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    head = LastScores(Sasrec(N_ITEMS, SasrecConfig(seq_len=10, dim=16, blocks=2, heads=2)))
    items, actions = cycle_world(users=7, length=12, seed=4)
    lengths = [12, 1, 5, 10, 3, 12, 7]  # short histories are left-padded
    batch = {
        "items": torch.from_numpy(windows(items, lengths, 10)),
        "actions": torch.from_numpy(windows(actions, lengths, 10)),
    }
    path = export_onnx(
        head,
        {k: v[:2] for k, v in batch.items()},
        tmp_path / "sasrec.onnx",
        dynamic_axes={"items": (0,), "actions": (0,), "score": (0,)},
    )
    assert check_parity(head, batch, path) <= 1e-4


def test_training_windows_cover_every_event_before_the_cut_once_as_a_target() -> None:
    seq = np.arange(1, 24, dtype=np.int64)  # 23 events
    acts = np.full(23, CLICK, dtype=np.int64)
    inputs, actions, targets = training_windows([seq], [acts], [20], seq_len=8)
    learned = np.sort(targets[targets > 0])
    assert learned.tolist() == list(range(2, 21))  # every event after the first, before the cut
    # within a window, the target of position t is the event after that position's input
    rows, cols = np.nonzero(targets)
    assert (targets[rows, cols] == inputs[rows, cols] + 1).all()
    assert ((inputs > 0) == (actions > 0)).all()


def test_ranks_skip_seen_items_and_count_a_seen_target_as_a_miss() -> None:
    scores = np.asarray([[0.9, 0.8, 0.7, 0.1]], dtype=np.float32)  # rows 1..4
    assert ranks_of_targets(scores, np.asarray([3]), [np.asarray([1])]).tolist() == [1]
    assert ranks_of_targets(scores, np.asarray([3]), [np.asarray([3])]).tolist() == [4]
