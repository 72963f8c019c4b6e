"""Step 1 of a micro-batch: apply its events to the user states, in order.

An already-applied event id is skipped (idempotence, see ``state.py``); every other event
moves its user's state (ring, seen items, counters, the update rule's vectors, see
``rules.py``) and is staged into the batch's :class:`~.statistics.StatsDelta`, which is NOT
committed here: the engine commits it at one point of the batch (:mod:`.statistics`).

With ``moment`` given, each event also takes a :class:`Snapshot` of its user's state right
after it (``"after"``: serving) or right before it (``"before"``: training and prequential
evaluation), so two events of one user in one batch get two different recommendations.
Without it (warm-up) no snapshot is taken.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from streamrec.streams.core.config import EngineConfig
from streamrec.streams.core.features import UserContext
from streamrec.streams.core.rules import UpdateRule
from streamrec.streams.core.state import UserState
from streamrec.streams.core.statistics import StatsDelta, event_key
from streamrec.streams.wire import Event

Moment = Literal["after", "before"]
#: ``get_vectors`` of the index: ids → (vectors [n, d] float32, found [n] bool).
VectorsOf = Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One event and its user as retrieval and features see them: the state snapshot
    ``context``, the items never to recommend back (``exclude``), and whether the event was
    newly applied (False: a duplicate that left the state unchanged)."""

    event: Event
    context: UserContext
    exclude: set[str]
    applied: bool


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying a batch gave: a snapshot per event (none in warm-up), the newly
    applied events as the batch's statistics delta, and how many events were duplicates."""

    snapshots: list[Snapshot]
    delta: StatsDelta
    duplicates: int


def apply_events(
    events: Sequence[Event],
    states: MutableMapping[str, UserState],
    rule: UpdateRule,
    config: EngineConfig,
    vectors_of: VectorsOf,
    *,
    dim: int,
    window: int | None,
    moment: Moment | None,
) -> Applied:
    """Apply ``events`` in order (see the module doc); ``states`` gets a (new or updated)
    state for every user of the batch. ``window``: how many previous items of the user each
    delta entry carries (co-visitation's window; None when no statistic needs them).
    ``vectors_of`` fetches the events' item vectors in one call."""
    unique = list(dict.fromkeys(e.item_id for e in events))
    fetched, found = vectors_of(unique)
    vectors = np.asarray(fetched, dtype=np.float32)
    row_of = {item: row for row, item in enumerate(unique) if found[row]}
    touched: dict[str, UserState] = {}
    snapshots: list[Snapshot] = []
    items: list[str] = []
    ts: list[int] = []
    weights: list[float] = []
    previous: list[tuple[str, ...]] = []
    keys: list[int] = []

    def snapshot(state: UserState) -> tuple[UserContext, set[str]]:
        context = UserContext.of(
            state,
            rule,
            dim=dim,
            recent=config.feature_recent,
            cold_threshold=config.cold_threshold,
        )
        return context, state.exclude

    for event in events:
        state = touched.get(event.user_id) or states.get(event.user_id) or UserState()
        touched[event.user_id] = state
        before = snapshot(state) if moment == "before" else None
        applied = not state.is_applied(event)
        if applied:
            state.record(
                event,
                recent_size=config.recent_size,
                seen_size=config.seen_size,
                applied_ids=config.applied_ids,
            )
            weight = rule.weight(event.action, event.weight)
            row = row_of.get(event.item_id)
            if row is not None:
                rule.update(state, vectors[row], weight, event.ts)
            items.append(event.item_id)
            ts.append(event.ts)
            weights.append(weight)
            recent = state.recent[-window - 1 : -1] if window is not None else ()
            previous.append(tuple(item for item, _, _ in recent))
            keys.append(event_key(event.user_id, event.event_id))
        if moment is not None:
            context, exclude = before or snapshot(state)
            snapshots.append(Snapshot(event, context, exclude, applied))
    states.update(touched)  # assignment is what a Faust table persists
    delta = StatsDelta(tuple(items), tuple(ts), tuple(weights), tuple(previous), tuple(keys))
    return Applied(snapshots, delta, len(events) - len(delta))
