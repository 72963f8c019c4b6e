"""Per-call cost of the rerankers at a fixed candidate count, one compute thread.

Each model scores the same event's candidates (padded to the yardstick count) again and
again, the models taking turns call by call. Each call is measured in CPU time of the
calling thread (``time.thread_time``: every model runs on that one thread), not wall-clock:
on a shared 2-core machine a wall-clock p99 is mostly the time the thread spent waiting
for a core, and a noisy neighbour failed the speed gate of a model that was fast. The
speed-up the gate reads is the median over calls of the per-call ratio of two models'
times (:func:`speedup`): neighbouring calls see the same machine, so what slows one slows
both and the ratio keeps.
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
    """Milliseconds of thread CPU time per call."""

    p50_ms: float
    p99_ms: float

    @classmethod
    def of(cls, seconds: np.ndarray) -> Latency:
        """p50/p99 of per-call times in seconds."""
        return cls(float(np.percentile(seconds, 50) * 1e3), float(np.percentile(seconds, 99) * 1e3))

    def as_dict(self) -> dict[str, float]:
        return {"p50_ms": round(self.p50_ms, 4), "p99_ms": round(self.p99_ms, 4)}


def time_calls(
    calls: Mapping[str, Callable[[], object]],
    runs: int,
    advance: Advance | None = None,
    clock: Callable[[], float] = time.thread_time,
) -> dict[str, np.ndarray]:
    """Seconds by ``clock`` of each of ``runs`` calls of each of ``calls`` (after ``WARMUP``
    untimed ones each); call ``i`` of every model is timed in the same round. The default
    clock is the thread's CPU time; pass ``time.perf_counter`` for work that leaves the
    thread (a GPU call waits without using the CPU)."""
    for call in calls.values():
        for _ in range(WARMUP):
            call()
    took = {name: np.empty(runs) for name in calls}
    for i in range(runs):
        for name, call in calls.items():
            start = clock()
            call()
            took[name][i] = clock() - start
        if advance is not None:
            advance(1)
    return took


def speedup(slow: np.ndarray, fast: np.ndarray) -> float:
    """Median over rounds of ``slow[i] / fast[i]`` (times of one round of :func:`time_calls`)."""
    return float(np.median(slow / np.maximum(fast, 1e-9)))
