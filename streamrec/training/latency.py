"""Per-call latency of the rerankers at a fixed candidate count, one compute thread.

Each model scores the same event's candidates (padded to the yardstick count) again and
again; p50/p99 are over the timed calls after a warm-up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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


def time_calls(call: Callable[[], object], runs: int, advance: Advance | None = None) -> Latency:
    """Time ``runs`` calls of ``call`` (after ``WARMUP`` untimed ones)."""
    for _ in range(WARMUP):
        call()
    took = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        call()
        took[i] = time.perf_counter() - start
        if advance is not None:
            advance(1)
    return Latency(float(np.percentile(took, 50) * 1e3), float(np.percentile(took, 99) * 1e3))
