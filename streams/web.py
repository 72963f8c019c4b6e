"""The worker's HTTP API (Faust web views).

- ``GET /recommendations/{user_id}?k=&exclude=a,b`` — the user's latest recommendations,
  answered by the worker that owns the user's partition (``table_route`` forwards the
  request there); a cold or unknown user gets recently-popular items. Either says its A/B
  ``variant`` (streams/variants.py).
- ``POST /events`` — validate one event (msgpack body, or JSON for convenience) and produce
  it to ``events``: 400 with the reason when invalid, 413 when oversize, 202 once the
  broker has it.
- ``GET /healthz`` — the process is alive; ``GET /readyz`` — tables recovered, engine
  (index + model) loaded and the catalog caught up; 503 with what is missing otherwise.
- ``GET /metrics`` — Prometheus text format.

With ``worker_auth_token`` set, every view but the two probes needs
``Authorization: Bearer <token>``; a forwarded request carries the caller's header along.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST

from streamrec.streams.runtime import Runtime
from streamrec.streams.variants import Experiment
from streamrec.streams.wire import InvalidRecord, Reason, decode_event, pack

#: The largest ``k`` a caller may ask for.
MAX_K = 1000


def register(rt: Runtime) -> None:
    """Attach the views to ``rt.app``."""
    app = rt.app
    settings = rt.settings
    token = settings.worker_auth_token
    experiment = Experiment.from_specs(settings.variants, settings.experiment_salt)

    def denied(view: View, request: Request) -> Response | None:
        """401 unless auth is off or the request carries the bearer token."""
        if token is None:
            return None
        given = request.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return None
        return view.error(
            401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )

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
            return denied(self, request) or self.bytes(
                rt.metrics.exposition(), content_type=CONTENT_TYPE_LATEST.split(";")[0]
            )

    @app.page("/recommendations/{user_id}")
    class Recommendations(View):
        @counted("recommendations")
        async def get(self, request: Request, user_id: str) -> Response:
            return denied(self, request) or await self.owner_answers(request, user_id=user_id)

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
            ids, counts = engine.popular.top()
            return self.json(
                _trimmed(
                    {
                        "user_id": user_id,
                        "items": ids,
                        "scores": [float(c) for c in counts],
                        "event_id": None,
                        "event_ts": None,
                        "emitted_ts": rt.now_ms(),
                        "model_version": engine.model_version,
                        "source": "popular",
                        "variant": experiment.bucket(user_id).name,
                    },
                    k,
                    exclude,
                )
            )

    @app.page("/events")
    class Events(View):
        @counted("events")
        async def post(self, request: Request) -> Response:
            if (refused := denied(self, request)) is not None:
                return refused
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
                except ValueError as exc:
                    return self.json(
                        {"reason": Reason.NOT_A_MAP.value, "error": f"invalid JSON: {exc}"},
                        status=400,
                    )
            try:
                event = decode_event(body, limit)
            except InvalidRecord as err:
                status = 413 if err.reason is Reason.OVERSIZE else 400
                return self.json({"reason": err.reason.value, "error": err.detail}, status=status)
            sent = await rt.events.send(key=event.user_id.encode(), value=body)
            meta = await sent
            return self.json(
                {"event_id": event.event_id, "partition": meta.partition, "offset": meta.offset},
                status=202,
            )


def _trimmed(rec: dict[str, Any], k: int, exclude: set[str]) -> dict[str, Any]:
    """``rec`` with excluded items removed and at most ``k`` items left."""
    kept = [(i, s) for i, s in zip(rec["items"], rec["scores"], strict=True) if i not in exclude]
    kept = kept[:k]
    return {**rec, "items": [i for i, _ in kept], "scores": [s for _, s in kept]}
