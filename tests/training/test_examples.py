"""Ranking groups logged through the engine core: labels are what the user did next."""

from __future__ import annotations

import numpy as np

from streamrec.index import build_index
from streamrec.streams.core.config import EngineConfig
from streamrec.streams.core.covis import CoVisitation
from streamrec.streams.core.engine import Engine
from streamrec.streams.core.features import COVIS_FEATURE, FEATURE_NAMES
from streamrec.streams.core.loader import rule_of
from streamrec.streams.core.popular import Popular
from streamrec.streams.wire import Event
from streamrec.training.examples import LATER_GAIN, GroupRequest, replay_and_log

ITEMS = [f"i{k}" for k in range(8)]


def engine(covis: CoVisitation | None = None) -> Engine:
    config = EngineConfig(candidates=6, cold_threshold=1)
    vectors = np.eye(8, dtype=np.float32) + 0.1
    index = build_index(ITEMS, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    popular = Popular(86400.0)
    return Engine(index, None, rule_of(config), popular, config, clock=lambda: 0, covis=covis)


def event(n: int, user: str, item: str, action: str = "click") -> Event:
    return Event(f"e{n}", user, item, action, 1_000 * (n + 1))


def test_group_labels_the_next_item_fully_and_later_ones_at_half() -> None:
    events = [
        event(0, "u", "i0"),
        event(1, "u", "i1", "save"),
        event(2, "v", "i7"),
        event(3, "u", "i2", "save"),  # logged: what the user does next is i2 (save) then i3
        event(4, "u", "i3"),
    ]
    rows = {item: k for k, item in enumerate(ITEMS)}
    (groups,) = replay_and_log(
        engine(), events, rows, [GroupRequest(np.array([3]), 2, len(events))],
        seq_len=4, candidates=6,
    )  # fmt: skip
    assert len(groups) == 1
    ids = [ITEMS[r] for r in groups.items[0][groups.mask[0]]]
    assert "i0" not in ids and "i1" not in ids  # seen items are never candidates
    gains = dict(zip(ids, groups.gains[0][groups.mask[0]], strict=True))
    assert gains["i2"] == 2.0  # a save, the very next action
    assert gains["i3"] == LATER_GAIN * 1.0  # a click, one action later
    assert all(g == 0 for item, g in gains.items() if item not in ("i2", "i3"))
    assert groups.seq[0].tolist() == [0, 0, 0, 1]  # u's history before the event, newest last
    assert groups.seq_weight[0].tolist() == [0.0, 0.0, 1.0, 2.0]
    assert groups.features.shape == (1, 6, len(FEATURE_NAMES))


def test_labels_stop_at_the_label_end_and_cold_users_are_not_logged() -> None:
    events = [event(0, "u", "i0"), event(1, "u", "i4"), event(2, "u", "i5"), event(3, "w", "i6")]
    rows = {item: k for k, item in enumerate(ITEMS)}
    first, second = replay_and_log(
        engine(), events, rows,
        [GroupRequest(np.array([1]), 3, 2), GroupRequest(np.array([0, 3]), 1, 4)],
        seq_len=2, candidates=6,
    )  # fmt: skip
    ids = [ITEMS[r] for r in first.items[0][first.mask[0]]]
    gains = dict(zip(ids, first.gains[0][first.mask[0]], strict=True))
    assert gains["i4"] == 1.0 and gains["i5"] == 0.0  # i5 comes at the label end
    assert len(second) == 0  # both are first events of their users: served popular items


def test_the_logged_covis_feature_is_what_others_did_before_never_the_logged_event() -> None:
    rows = {item: k for k, item in enumerate(ITEMS)}
    col = FEATURE_NAMES.index(COVIS_FEATURE)

    def covis_of_i1(events: list[Event]) -> float:
        (groups,) = replay_and_log(
            engine(CoVisitation(window=3)), events, rows,
            [GroupRequest(np.array([len(events) - 1]), 1, len(events))],
            seq_len=4, candidates=6,
        )  # fmt: skip
        ids = [ITEMS[r] for r in groups.items[0][groups.mask[0]]]
        return float(groups.features[0][groups.mask[0]][ids.index("i1"), col])

    mine = [event(2, "u", "i0"), event(3, "u", "i1")]  # logged: u's i0 -> i1
    assert covis_of_i1([event(0, "v", "i0"), event(1, "v", "i1"), *mine]) == 1.0  # v's pair
    assert covis_of_i1(mine) == 0.0  # the logged event itself is not counted yet
