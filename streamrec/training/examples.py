"""Logging ranking groups by replaying the stream through the engine core.

Every event moves the engine's user state and popularity exactly as in serving
(``Engine.apply``); at each sampled event, ``Engine.prepare(..., moment="before")`` returns
the candidates and feature rows the engine would have served just before the user acted.
The group's labels are what the user did next: the event's own item with its action
weight, and (for training) the items of the user's following events at half weight.
Only personalized events are kept: cold users get popular items, which are not reranked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from streamrec.data.files import Advance
from streamrec.models.ranking_data import RankingGroups
from streamrec.streams.core.engine import PERSONALIZED, Engine
from streamrec.streams.core.state import UserState
from streamrec.streams.wire import Event

_APPLY_CHUNK = 2048
LATER_GAIN = 0.5  # a later next action counts this much of the very next one


@dataclass(frozen=True)
class GroupRequest:
    """Which events to log and how to label them."""

    positions: np.ndarray  # sorted global event positions to log
    horizon: int  # label with the user's next `horizon` events...
    label_end: int  # ...that come before this position


def _future_index(events: Sequence[Event]) -> tuple[dict[str, list[int]], np.ndarray]:
    """Each user's event positions, and each event's ordinal among its user's events."""
    by_user: dict[str, list[int]] = {}
    ordinal = np.zeros(len(events), dtype=np.int64)
    for pos, event in enumerate(events):
        lst = by_user.setdefault(event.user_id, [])
        ordinal[pos] = len(lst)
        lst.append(pos)
    return by_user, ordinal


def replay_and_log(
    engine: Engine,
    events: Sequence[Event],
    item_rows: Mapping[str, int],
    requests: Sequence[GroupRequest],
    *,
    seq_len: int,
    candidates: int,
    advance: Advance | None = None,
) -> list[RankingGroups]:
    """Replay all ``events`` in order through ``engine`` and log one set of groups per
    request (e.g. learning-part and held-out samples)."""
    by_user, ordinal = _future_index(events)
    owner = {int(p): i for i, r in enumerate(requests) for p in r.positions}
    builders = [_GroupBuilder(seq_len, candidates) for _ in requests]
    states: dict[str, UserState] = {}
    tick = advance or (lambda _n: None)
    pos = 0
    for target in [*sorted(owner), len(events)]:
        while pos < target:  # the events in between only move state and popularity
            step = min(target - pos, _APPLY_CHUNK)
            engine.apply(events[pos : pos + step], states)
            pos += step
            tick(step)
        if target == len(events):
            break
        event, request = events[pos], requests[owner[pos]]
        state = states.get(event.user_id)
        recent = list(state.recent[-seq_len:]) if state is not None else []
        (cset,) = engine.prepare([event], states, moment="before")
        if cset.source == PERSONALIZED:
            later = by_user[event.user_id][ordinal[pos] : ordinal[pos] + request.horizon]
            labels = [
                (events[p].item_id, engine.rule.weight(events[p].action, events[p].weight))
                for p in later
                if p < request.label_end
            ]
            recent_rows = [
                (item_rows[i], engine.rule.weight(a, None)) for i, a, _ in recent if i in item_rows
            ]
            builders[owner[pos]].add(cset.ids, cset.features, recent_rows, labels, item_rows)
        pos += 1
        tick(1)
    return [b.build() for b in builders]


class _GroupBuilder:
    """Accumulates groups, padded to ``candidates`` slots and ``seq_len`` actions."""

    def __init__(self, seq_len: int, candidates: int) -> None:
        self.seq_len = seq_len
        self.candidates = candidates
        self.features: list[np.ndarray] = []
        self.items: list[np.ndarray] = []
        self.seq: list[np.ndarray] = []
        self.seq_weight: list[np.ndarray] = []
        self.gains: list[np.ndarray] = []
        self.counts: list[int] = []

    def add(
        self,
        ids: list[str],
        features: np.ndarray,
        recent: list[tuple[int, float]],
        labels: list[tuple[str, float]],
        item_rows: Mapping[str, int],
    ) -> None:
        """One group: candidate ids and feature rows in retrieval order, the user's recent
        (item row, action weight) oldest first, and the (item, weight) of what came next."""
        c = self.candidates
        n = min(len(ids), c)
        feats = np.zeros((c, features.shape[1]), dtype=np.float32)
        feats[:n] = features[:n]
        items = np.zeros(c, dtype=np.int64)
        items[:n] = [item_rows.get(i, 0) for i in ids[:n]]
        gains = np.zeros(c, dtype=np.float32)
        slot = {item: k for k, item in enumerate(ids[:n])}
        for j, (item, weight) in enumerate(labels):
            k = slot.get(item)
            if k is not None:
                gains[k] = max(gains[k], weight * (1.0 if j == 0 else LATER_GAIN))
        seq = np.zeros(self.seq_len, dtype=np.int64)
        seq_w = np.zeros(self.seq_len, dtype=np.float32)
        if recent:  # newest last, left-padded
            seq[-len(recent) :] = [r for r, _ in recent]
            seq_w[-len(recent) :] = [w for _, w in recent]
        self.counts.append(n)
        self.features.append(feats)
        self.items.append(items)
        self.gains.append(gains)
        self.seq.append(seq)
        self.seq_weight.append(seq_w)

    def build(self) -> RankingGroups:
        g, c, s = len(self.features), self.candidates, self.seq_len
        width = self.features[0].shape[1] if self.features else 0
        items = np.stack(self.items) if g else np.zeros((0, c), np.int64)
        return RankingGroups(
            features=np.stack(self.features) if g else np.zeros((0, c, width), np.float32),
            items=items,
            mask=np.arange(c)[None, :] < np.asarray(self.counts, dtype=np.int64).reshape(-1, 1),
            seq=np.stack(self.seq) if g else np.zeros((0, s), np.int64),
            seq_weight=np.stack(self.seq_weight) if g else np.zeros((0, s), np.float32),
            gains=np.stack(self.gains) if g else np.zeros((0, c), np.float32),
        )
