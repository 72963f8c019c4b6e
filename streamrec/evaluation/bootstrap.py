"""Paired bootstrap over users: confidence intervals for metrics and for ratios of systems.

Events of one user are not independent (a user who likes blockbusters hits popular lists
again and again), so the unit of resampling is the user. Every system is scored on the
same replay, so one set of resampled users is shared by all of them (paired): a ratio's
interval then reflects only how the systems differ, not how the users happened to fall.
A metric is a ratio estimator over the resample: sum of gains / number of events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A point estimate with its two-sided percentile confidence interval."""

    value: float
    low: float
    high: float

    def overlaps(self, other: Interval) -> bool:
        """Whether the two intervals share any point."""
        return self.low <= other.high and other.low <= self.high

    def to_json(self) -> dict[str, float]:
        """Plain floats for report.json."""
        return {"value": self.value, "low": self.low, "high": self.high}


class PairedBootstrap:
    """Resampling weights over users, drawn once and applied to every system and metric."""

    def __init__(
        self, users: np.ndarray, *, samples: int, seed: int, confidence: float = 0.95
    ) -> None:
        """``users[i]`` is the user (any integer id) of scored event ``i``; a resample draws
        as many users as have scored events, from those users only."""
        _, dense = np.unique(np.asarray(users, dtype=np.int64), return_inverse=True)
        self.users = dense.astype(np.int64).reshape(-1)
        self.n_users = int(self.users.max()) + 1 if len(self.users) else 0
        self.confidence = confidence
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, max(self.n_users, 1), size=(samples, self.n_users))
        offsets = (np.arange(samples) * self.n_users)[:, None]
        self.weights = (
            np.bincount((draws + offsets).ravel(), minlength=samples * self.n_users)
            .reshape(samples, self.n_users)
            .astype(np.float64)
        )
        self.events_per_user = np.bincount(self.users, minlength=self.n_users).astype(np.float64)
        self._resampled_events = self.weights @ self.events_per_user

    def _per_user(
        self, gains: np.ndarray, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        users = self.users if mask is None else self.users[mask]
        g = gains if mask is None else gains[mask]
        sums = np.bincount(users, weights=g, minlength=self.n_users)
        if mask is None:
            return sums, self._resampled_events
        counts = np.bincount(users, minlength=self.n_users).astype(np.float64)
        return sums, self.weights @ counts

    def _interval(self, point: float, resampled: np.ndarray) -> Interval:
        tail = (1.0 - self.confidence) / 2.0 * 100.0
        finite = resampled[np.isfinite(resampled)]
        if not len(finite):
            return Interval(point, float("nan"), float("nan"))
        low, high = np.percentile(finite, [tail, 100.0 - tail])
        return Interval(point, float(low), float(high))

    def metric(self, gains: np.ndarray, mask: np.ndarray | None = None) -> Interval:
        """Mean gain over the (masked) events with its CI."""
        sums, n = self._per_user(gains, mask)
        total = float(sums.sum())
        events = float(len(gains) if mask is None else mask.sum())
        point = total / events if events else float("nan")
        with np.errstate(invalid="ignore", divide="ignore"):
            resampled = (self.weights @ sums) / n
        return self._interval(point, resampled)

    def ratio(self, gains_a: np.ndarray, gains_b: np.ndarray) -> Interval:
        """Mean gain of system a over that of system b on the same events, with its CI."""
        sums_a, _ = self._per_user(gains_a, None)
        sums_b, _ = self._per_user(gains_b, None)
        total_b = float(sums_b.sum())
        point = float(sums_a.sum()) / total_b if total_b else float("nan")
        with np.errstate(invalid="ignore", divide="ignore"):
            resampled = (self.weights @ sums_a) / (self.weights @ sums_b)
        return self._interval(point, resampled)
