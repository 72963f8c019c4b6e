"""Adaptation to interest drift, on a synthetic world whose switches are known.

``streamrec data synth`` records, beside its stream, when each drifting user swapped one
interest for a new item cluster (``<stem>.drift.jsonl``) and which cluster every item is in
(``<stem>.truth.npz`` ``item_cluster``, row-aligned with ``<stem>.items.npz`` ids). For each
switch inside the replayed stream we follow the lists a system emitted after each of that
user's events from the switch on, and count the events until at least ``share`` of the
top-10 is from the new cluster. A user whose remaining events never get there is *not
adapted* (censored), so each system reports the adapted share, the median over all switches
(censored ones count as never) and the mean new-interest share at each step after the switch.

Counted from the switch (``start="switch"``), the figure also measures the user's session
schedule: sessions follow one interest each, so the events after a switch are often in
another interest's session, where the right list is *not* the new cluster, and no causal
system can see the switch before the user acts in the new cluster. Counted from the
evidence (``start="evidence"``), steps start at the user's first event at or after the
switch on an item of the new cluster, and switches without such an event in the replay are
left out (nothing to adapt to): that is the system's own reaction time. Both are reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from streamrec.data.files import companion
from streamrec.evaluation.prequential import Replay, Vocab
from streamrec.index.vectors import load_vectors


@dataclass(frozen=True)
class Switch:
    """One recorded interest switch."""

    user_id: str
    ts: int
    new_cluster: int


@dataclass(frozen=True)
class DriftTruth:
    """The switches and the cluster of every item index of the replay's vocabulary."""

    switches: list[Switch]
    item_cluster: np.ndarray  # per item index; -1 where unknown

    @classmethod
    def load(cls, world: Path, items: Vocab) -> DriftTruth:
        """Read the ground truth beside the synthetic stream ``world``."""
        paths = {s: companion(world, s) for s in (".drift.jsonl", ".truth.npz", ".items.npz")}
        for suffix, path in paths.items():
            if not path.is_file():
                raise FileNotFoundError(f"{path}: the drift analysis needs {world}'s {suffix}")
        switches = [
            Switch(str(obj["user_id"]), int(obj["ts"]), int(obj["new_cluster"]))
            for obj in map(json.loads, paths[".drift.jsonl"].read_text().splitlines())
        ]
        ids, _ = load_vectors(paths[".items.npz"])
        with np.load(paths[".truth.npz"], allow_pickle=False) as truth:
            clusters = truth["item_cluster"]
        item_cluster = np.full(len(items), -1, dtype=np.int64)
        for item_id, cluster in zip(ids, clusters.tolist(), strict=True):
            index = items.index.get(item_id)
            if index is not None:
                item_cluster[index] = cluster
        return cls(switches, item_cluster)


@dataclass
class Adaptation:
    """One system's adaptation over all switches."""

    switches: int
    adapted: int
    events_to_adapt: list[int]  # per adapted switch
    median_events: float  # over all switches; inf when half or more never adapt
    share_curve: list[float]  # mean new-interest share of the top-10 at step 1..horizon
    median_ci95: tuple[float, float] = (float("nan"), float("nan"))  # over resampled switches

    def to_json(self) -> dict[str, object]:
        return {
            "switches": self.switches,
            "adapted": self.adapted,
            "adapted_share": self.adapted / self.switches if self.switches else None,
            "median_events_to_adapt": _finite(self.median_events),
            "median_events_ci95": [_finite(v) for v in self.median_ci95],
            "mean_events_to_adapt_if_adapted": (
                float(np.mean(self.events_to_adapt)) if self.events_to_adapt else None
            ),
            "share_curve": self.share_curve,
        }


#: Where the count of events to adapt starts (module doc).
Start = Literal["switch", "evidence"]


def adaptation(
    replay: Replay,
    truth: DriftTruth,
    *,
    share: float,
    top: int = 10,
    horizon: int = 20,
    start: Start = "switch",
) -> dict[str, Adaptation]:
    """Events-to-adapt per system for every switch that falls inside the replayed stream,
    counted from the switch or from the user's first event in the new cluster (``start``)."""
    test = replay.test
    by_user: dict[int, list[int]] = {}
    for pos, user in enumerate(test.users.tolist()):
        by_user.setdefault(user, []).append(pos)
    first_ts, last_ts = int(test.ts[0]), int(test.ts[-1])
    followed: list[tuple[Switch, list[int]]] = []
    for switch in truth.switches:
        user = replay.users.index.get(switch.user_id)
        if user is None or not first_ts <= switch.ts <= last_ts:
            continue
        after = [p for p in by_user.get(user, []) if test.ts[p] >= switch.ts]
        if start == "evidence":
            in_new = truth.item_cluster[test.items[after]] == switch.new_cluster
            after = after[int(np.argmax(in_new)) :] if in_new.any() else []
        if after:
            followed.append((switch, after))
    out: dict[str, Adaptation] = {}
    for name, outcome in replay.outcomes.items():
        steps: list[float] = []
        curve_sum = np.zeros(horizon)
        curve_n = np.zeros(horizon)
        for switch, positions in followed:
            needed = float("inf")
            for step, pos in enumerate(positions, start=1):
                emitted = outcome.traces.get(pos)
                if emitted is None:  # the user's last event: nothing more is shown
                    break
                got = float(np.mean(truth.item_cluster[emitted[:top]] == switch.new_cluster))
                if step <= horizon:
                    curve_sum[step - 1] += got
                    curve_n[step - 1] += 1
                if got >= share and not np.isfinite(needed):
                    needed = step
            steps.append(needed)
        finite = [int(s) for s in steps if np.isfinite(s)]
        out[name] = Adaptation(
            switches=len(steps),
            adapted=len(finite),
            events_to_adapt=finite,
            median_events=float(np.median(steps)) if steps else float("nan"),
            share_curve=(curve_sum / np.maximum(curve_n, 1)).tolist(),
            median_ci95=median_interval(np.asarray(steps)),
        )
    return out


def median_interval(
    steps: np.ndarray, *, samples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the median over switches (resampled with
    replacement; never-adapted ones stay inf, so a bound can be inf); nan without any."""
    if not len(steps):
        return float("nan"), float("nan")
    draws = np.random.default_rng(seed).integers(0, len(steps), size=(samples, len(steps)))
    medians = np.median(steps[draws], axis=1)
    low, high = np.quantile(medians, [0.025, 0.975], method="lower")
    return float(low), float(high)


def _finite(value: float) -> float | None:
    """A float for report.json: None for inf (never) or nan (no switch)."""
    return value if np.isfinite(value) else None


def tracked_users(truth: DriftTruth, users: Vocab) -> set[int]:
    """User indices with a recorded switch (their emitted lists must be kept)."""
    return {users.index[s.user_id] for s in truth.switches if s.user_id in users.index}
