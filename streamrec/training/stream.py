"""The training file as the run sees it: events in time order, split into a learning part
and a held-out tail, and the learning part as per-user item sequences for the embeddings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamrec.streams.recorded import read_events
from streamrec.streams.wire import Event


@dataclass
class TrainingStream:
    """All events of the training file, stably sorted by time; ``events[:split]`` learn."""

    events: list[Event]
    split: int

    @classmethod
    def read(cls, path: Path, holdout_frac: float) -> TrainingStream:
        """Read ``path`` and hold out its last ``holdout_frac`` of events (by time)."""
        events = list(read_events(path))
        events.sort(key=lambda e: e.ts)  # stable: a time-ordered file stays as it is
        split = int(len(events) * (1.0 - holdout_frac))
        if split < 10 or split >= len(events):
            raise ValueError(
                f"{path}: {len(events)} events are too few to hold out {holdout_frac:.0%}"
            )
        return cls(events, split)

    def item_sequences(
        self, weight: Callable[[str, float | None], float]
    ) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
        """Items of the learning part (first-seen order) and each user's time-ordered item
        rows with their action weights (``weight``: the update rule's), for
        :func:`train_item_embeddings`."""
        rows: dict[str, int] = {}
        seqs: dict[str, list[int]] = {}
        wts: dict[str, list[float]] = {}
        for event in self.events[: self.split]:
            row = rows.setdefault(event.item_id, len(rows))
            seqs.setdefault(event.user_id, []).append(row)
            wts.setdefault(event.user_id, []).append(weight(event.action, event.weight))
        users = list(seqs)
        return (
            list(rows),
            [np.asarray(seqs[u], dtype=np.int64) for u in users],
            [np.asarray(wts[u], dtype=np.float64) for u in users],
        )
