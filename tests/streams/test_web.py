"""The HTTP admission pieces that need no running worker: the request-rate token bucket,
and the middleware every route passes, on a real aiohttp server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web as aioweb
from aiohttp.test_utils import TestClient, TestServer

from streamrec.config import Settings
from streamrec.streams.app import create_app, runtime_of
from streamrec.streams.web import RateLimit, guard


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


def statuses(tmp_path: Path, requests: int, **settings: object) -> list[int]:
    """The statuses of ``requests`` GETs, one after another, through :func:`guard` of a
    worker built from ``settings`` (the app is built, not started: no broker needed)."""
    rt = runtime_of(create_app(Settings(worker_data_dir=tmp_path, **settings)))  # type: ignore[arg-type]

    async def ok(request: aioweb.Request) -> aioweb.Response:
        return aioweb.json_response({"ok": True})

    async def run() -> list[int]:
        app = aioweb.Application(middlewares=[guard(rt)])
        app.router.add_get("/recommendations/{user_id}", ok)
        async with TestClient(TestServer(app)) as client:
            return [(await client.get(f"/recommendations/u{i}")).status for i in range(requests)]

    return asyncio.run(run())


def test_no_rate_limit_admits_every_request(tmp_path: Path) -> None:
    # worker_http_max_rps=0 is documented as no limit; it once answered every request 500
    assert statuses(tmp_path, 50, worker_http_max_rps=0) == [200] * 50


def test_no_time_to_queue_still_admits_a_request_that_finds_a_free_slot(tmp_path: Path) -> None:
    # worker_http_queue_s=0 once refused every request: waiting 0 s for even a free slot
    # timed out
    assert statuses(tmp_path, 20, worker_http_max_rps=0, worker_http_queue_s=0) == [200] * 20


def test_requests_over_the_rate_limit_are_refused_with_503(tmp_path: Path) -> None:
    # 10/s: a burst of one, then each further request would wait ~0.1 s, over the 0 s queue
    got = statuses(tmp_path, 20, worker_http_max_rps=10, worker_http_queue_s=0)
    assert got[0] == 200 and 503 in got
