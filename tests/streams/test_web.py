"""The HTTP admission pieces that need no worker: the request-rate token bucket."""

from __future__ import annotations

import pytest

from streamrec.streams.web import RateLimit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_requests_wait_their_turn_and_long_waits_are_refused() -> None:
    clock = Clock()
    pace = RateLimit(100.0, clock)  # bursts of 10
    assert [pace.take(0.5) for _ in range(10)] == [0.0] * 10
    assert pace.take(0.5) == pytest.approx(0.01)
    waits = [pace.take(0.5) for _ in range(60)]
    assert waits[-1] is None and max(w for w in waits if w is not None) <= 0.5
    clock.now += 1.0  # a quiet second refills the burst, no more
    assert [pace.take(0.0) for _ in range(11)] == [0.0] * 10 + [None]


def test_on_average_the_rate_is_the_limit() -> None:
    clock = Clock()
    pace = RateLimit(50.0, clock)
    admitted = 0
    for _ in range(1000):  # 10 s of requests every 10 ms, 100/s offered
        clock.now += 0.01
        if pace.take(0.0) is not None:
            admitted += 1
    assert admitted == pytest.approx(500, abs=6)
