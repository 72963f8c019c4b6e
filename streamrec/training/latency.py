"""Per-call latency of the rerankers at a fixed candidate count, one compute thread.

Each model scores the same event's candidates (padded to the yardstick count) again and
again, the models taking turns; p50/p99 are over the timed calls after a warm-up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from streamrec.data.files import Advance

WARMUP = 20


@dataclass(frozen=True)
class Latency:
    """Milliseconds per call."""

    p50_ms: float
    p99_ms: float

    def as_dict(self) -> dict[str, float]:
        return {"p50_ms": round(self.p50_ms, 4), "p99_ms": round(self.p99_ms, 4)}


def time_calls(
    calls: Mapping[str, Callable[[], object]], runs: int, advance: Advance | None = None
) -> dict[str, Latency]:
    """Time ``runs`` calls of each of ``calls`` (after ``WARMUP`` untimed ones each).

    The models take turns call by call, so a noisy neighbour on the machine hits all of
    them alike rather than whichever happened to be timed at that moment.
    """
    for call in calls.values():
        for _ in range(WARMUP):
            call()
    took = {name: np.empty(runs) for name in calls}
    for i in range(runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            took[name][i] = time.perf_counter() - start
        if advance is not None:
            advance(1)
    return {
        name: Latency(float(np.percentile(t, 50) * 1e3), float(np.percentile(t, 99) * 1e3))
        for name, t in took.items()
    }
