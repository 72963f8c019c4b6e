"""The worker's HTTP API (Faust web views).

- ``GET /recommendations/{user_id}?k=&exclude=a,b`` — the user's latest recommendations,
  answered by the worker that owns the user's partition (``table_route`` forwards the
  request there); a user without one yet gets the engine's cold list (``recommend_cold``:
  recently-popular items still in the index, as a cold user's event gets). Either says its A/B
  ``variant`` (streams/variants.py).
- ``POST /events`` — validate one event (msgpack body, or JSON for convenience) and produce
  it to ``events``: 400 with the reason when invalid (a JSON integer beyond 64 bits, a
  ``ts`` outside the accepted window included), 413 when oversize, 202 once the broker
  has it.
- ``GET /healthz`` — the process is alive; ``GET /readyz`` — tables recovered, engine
  (index + model) loaded, the catalog caught up, the broker reachable and the consumer lag
  under its threshold; 503 with what is missing otherwise.
- ``GET /metrics`` — Prometheus text format.
- ``GET /stats/global?k=`` — this worker's global statistics (streams/shared_stats.py):
  events counted, top-k popular items with counts, co-visitation of the top items.
- ``GET /openapi.json`` — an OpenAPI 3.1 description of every route served.

One aiohttp middleware guards every route, Faust's own included (:func:`guard`): with
``worker_auth_token`` set, every route but the two probes needs
``Authorization: Bearer <token>`` (a forwarded request carries the caller's header
along); /metrics needs ``worker_metrics_token`` when that is set and is open otherwise.
Every request gets at most ``worker_http_timeout_s`` (then 503). HTTP shares the event
loop and the GIL with the stream, and unbounded GET load starved it (551 -> 25 events/s
under 32 clients), so the probes aside at most ``worker_http_max_rps`` requests/s are
admitted (a token bucket; a request waits up to ``worker_http_queue_s`` for its turn,
else 503) and at most ``worker_http_max_concurrency`` run at once.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web as aioweb
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST

from streamrec.streams.openapi import openapi_document
from streamrec.streams.runtime import Runtime
from streamrec.streams.variants import Experiment
from streamrec.streams.wire import InvalidRecord, Reason, decode_event, pack

#: The largest ``k`` a caller may ask for.
MAX_K = 1000


def register(rt: Runtime) -> None:
    """Attach the views to ``rt.app``."""
    app = rt.app
    settings = rt.settings
    experiment = Experiment.from_specs(settings.variants, settings.experiment_salt)
    app.web.web_app.middlewares.append(guard(rt))

    def counted(name: str) -> Callable[[Callable[..., Awaitable[Response]]], Any]:
        def wrap(handler: Callable[..., Awaitable[Response]]) -> Any:
            async def counted_handler(view: View, request: Request, **kwargs: Any) -> Response:
                response = await handler(view, request, **kwargs)
                rt.metrics.http_requests.labels(name, str(response.status)).inc()
                return response

            return counted_handler

        return wrap

    @app.page("/healthz")
    class Healthz(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok", "worker": rt.worker_name})

    @app.page("/readyz")
    class Readyz(View):
        async def get(self, request: Request) -> Response:
            checks = rt.readiness()
            ready = all(checks.values())
            return self.json({"ready": ready, **checks}, status=200 if ready else 503)

    @app.page("/metrics")
    class MetricsView(View):
        @counted("metrics")
        async def get(self, request: Request) -> Response:
            return self.bytes(
                rt.metrics.exposition(), content_type=CONTENT_TYPE_LATEST.split(";")[0]
            )

    @app.page("/recommendations/{user_id}")
    class Recommendations(View):
        @counted("recommendations")
        async def get(self, request: Request, user_id: str) -> Response:
            try:
                user_id.encode()
            except UnicodeEncodeError:  # a percent-encoded byte that is not UTF-8
                return self.error(400, "user_id must be UTF-8")
            return await self.owner_answers(request, user_id=user_id)

        @app.table_route(table=rt.recs, match_info="user_id")
        async def owner_answers(self, request: Request, user_id: str) -> Response:
            try:
                k = int(request.query.get("k", settings.engine_k))
            except ValueError:
                return self.error(400, "k must be an integer")
            if not 1 <= k <= MAX_K:
                return self.error(400, f"k must be between 1 and {MAX_K}")
            exclude = {x for x in request.query.get("exclude", "").split(",") if x}
            stored = rt.recs.get(user_id)
            if stored is not None:
                return self.json(_trimmed(stored, k, exclude))
            if not rt.engine_loaded:
                return self.error(503, "engine not loaded yet")
            engine = await rt.engine()
            # The engine's own cold path, on the compute thread (it reads the index, which
            # the catalog agent mutates there): what a cold user's event gets on the stream.
            cold = await rt.run(engine.recommend_cold, user_id, k, exclude)
            return self.json({**cold.to_map(), "variant": experiment.bucket(user_id).name})

    @app.page("/stats/global")
    class GlobalStatistics(View):
        @counted("stats")
        async def get(self, request: Request) -> Response:
            try:
                k = int(request.query.get("k", 100))
            except ValueError:
                return self.error(400, "k must be an integer")
            if not 1 <= k <= MAX_K:
                return self.error(400, f"k must be between 1 and {MAX_K}")
            if not rt.engine_loaded:
                return self.error(503, "engine not loaded yet")
            engine = await rt.engine()
            return self.json(await rt.run(rt.global_stats.describe, engine, k))

    @app.page("/events")
    class Events(View):
        @counted("events")
        async def post(self, request: Request) -> Response:
            limit = settings.max_event_bytes
            length = int(request.headers.get("Content-Length") or 0)
            if length > limit:
                detail = f"{length} bytes exceeds the limit of {limit}"
                return self.json({"reason": Reason.OVERSIZE.value, "error": detail}, status=413)
            body = await request.read()
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type == "application/json":
                try:
                    body = pack(json.loads(body))
                except (ValueError, RecursionError) as exc:  # RecursionError: deep nesting
                    return self.json(
                        {"reason": Reason.NOT_A_MAP.value, "error": f"invalid JSON: {exc}"},
                        status=400,
                    )
                except OverflowError:  # msgpack holds integers of 64 bits at most
                    error = "a JSON integer is out of range (64 bits at most)"
                    return self.json({"reason": Reason.BAD_VALUE.value, "error": error}, status=400)
            try:
                event = decode_event(body, limit)
                rt.ts_window.check(event.ts, rt.now_ms())
            except InvalidRecord as err:
                status = 413 if err.reason is Reason.OVERSIZE else 400
                return self.json({"reason": err.reason.value, "error": err.detail}, status=status)
            sent = await rt.events.send(key=event.user_id.encode(), value=body)
            meta = await sent
            return self.json(
                {"event_id": event.event_id, "partition": meta.partition, "offset": meta.offset},
                status=202,
            )

    @app.page("/openapi.json")
    class OpenAPI(View):
        @counted("openapi")
        async def get(self, request: Request) -> Response:
            return self.json(openapi_document(app.web.web_app.router.routes(), MAX_K))


#: Routes answered without a token and outside the concurrency bound: the probes.
PROBES = frozenset({"/healthz", "/readyz"})


def guard(rt: Runtime) -> Callable[..., Awaitable[aioweb.StreamResponse]]:
    """The middleware every request passes: bearer token, concurrency bound, timeout."""
    s = rt.settings
    token, metrics_token = s.reveal("worker_auth_token"), s.reveal("worker_metrics_token")
    slots = asyncio.Semaphore(s.worker_http_max_concurrency)
    pace = RateLimit(s.worker_http_max_rps) if s.worker_http_max_rps > 0 else None

    def refuse(reason: str, status: int, error: str, **headers: str) -> aioweb.Response:
        rt.metrics.http_refused.labels(reason).inc()
        return aioweb.json_response({"error": error}, status=status, headers=headers)

    @aioweb.middleware
    async def middleware(
        request: aioweb.Request, handler: Callable[..., Awaitable[aioweb.StreamResponse]]
    ) -> aioweb.StreamResponse:
        path = request.path
        needed = metrics_token if path == "/metrics" else None if path in PROBES else token
        if needed is not None and not _bearer_is(request, needed, token):
            return refuse(
                "unauthorized",
                401,
                "missing or wrong bearer token",
                **{"WWW-Authenticate": "Bearer"},
            )
        try:
            async with asyncio.timeout(s.worker_http_timeout_s):
                if path in PROBES:
                    return await handler(request)
                wait = 0.0 if pace is None else pace.take(s.worker_http_queue_s)
                if wait is None:
                    return refuse(
                        "busy", 503, "request rate over the limit", **{"Retry-After": "1"}
                    )
                if wait:
                    await asyncio.sleep(wait)
                try:  # a free slot is taken at once, even with no time to queue
                    await (
                        slots.acquire()
                        if not slots.locked()
                        else asyncio.wait_for(slots.acquire(), s.worker_http_queue_s)
                    )
                except TimeoutError:
                    return refuse(
                        "busy", 503, "too many requests in flight", **{"Retry-After": "1"}
                    )
                try:
                    return await handler(request)
                finally:
                    slots.release()
        except TimeoutError:
            return refuse("timeout", 503, f"no answer within {s.worker_http_timeout_s:g}s")

    return middleware


class RateLimit:
    """A token bucket: ``rate`` requests/s on average, bursts of a tenth of a second's."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1.0, rate / 10)
        self._tokens = self.burst
        self._clock = clock
        self._last = clock()

    def take(self, max_wait: float) -> float | None:
        """Reserve a turn: the seconds to wait for it, or None (nothing reserved) when that
        would be longer than ``max_wait``."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        wait = max(0.0, (1.0 - self._tokens) / self.rate)
        if wait > max_wait:
            return None
        self._tokens -= 1.0
        return wait


def _bearer_is(request: aioweb.Request, *tokens: str | None) -> bool:
    """Whether the request's bearer token is one of ``tokens`` (constant-time compare)."""
    given = request.headers.get("Authorization", "").encode()
    return any(hmac.compare_digest(given, f"Bearer {t}".encode()) for t in tokens if t is not None)


def _trimmed(rec: dict[str, Any], k: int, exclude: set[str]) -> dict[str, Any]:
    """``rec`` with excluded items removed and at most ``k`` items left (it stops at the
    ``k``-th kept item: a GET runs on the stream's event loop)."""
    items: list[str] = []
    scores: list[float] = []
    for item, score in zip(rec["items"], rec["scores"], strict=False):
        if item not in exclude:
            items.append(item)
            scores.append(score)
            if len(items) == k:
                break
    return {**rec, "items": items, "scores": scores}
