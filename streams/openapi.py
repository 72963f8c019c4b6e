"""The OpenAPI 3.1 description of the worker's HTTP API, served at ``GET /openapi.json``.

It is built from the routes the running web app serves, so it cannot miss one: the
documented operations come from :data:`OPERATIONS`, and any other route (Faust's own
/router and /table views when ``worker_faust_views`` is on) is listed as an undocumented
GET, so a client — or a fuzzer, or the route audit in the tests — sees every route.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from aiohttp.web import AbstractRoute

_ERROR = {
    "description": "Refused, with why",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"error": {"type": "string"}, "reason": {"type": "string"}},
            }
        }
    },
}
_JSON = {"application/json": {"schema": {"type": "object"}}}
_REFUSALS = {
    "401": {**_ERROR, "description": "Missing or wrong bearer token"},
    "503": {**_ERROR, "description": "Busy, timed out, or not ready"},
}
_EVENT = {
    "type": "object",
    "required": ["event_id", "user_id", "item_id", "action", "ts"],
    "properties": {
        "event_id": {"type": "string", "minLength": 1},
        "user_id": {"type": "string", "minLength": 1},
        "item_id": {"type": "string", "minLength": 1},
        "action": {"type": "string", "enum": ["click", "save"]},
        "ts": {"type": "integer", "description": "Milliseconds since the epoch."},
        "surface": {"type": "string"},
        "weight": {"type": "number", "minimum": 0},
    },
}


def _operations(max_k: int) -> dict[str, dict[str, Any]]:
    """The documented operations, by path."""
    return {
        "/healthz": {
            "get": {
                "summary": "The process is alive",
                "security": [],
                "responses": {"200": {"description": "Alive", "content": _JSON}},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Ready to serve: every readiness condition, true or false",
                "security": [],
                "responses": {
                    "200": {"description": "Ready", "content": _JSON},
                    "503": {"description": "Not ready (the false conditions say why)"},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (the scrape token when one is set)",
                "responses": {
                    "200": {"description": "Text exposition format"},
                    "401": _REFUSALS["401"],
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1", "content": _JSON}},
            }
        },
        "/recommendations/{user_id}": {
            "get": {
                "summary": "The user's latest recommendations (popular items for a cold user)",
                "parameters": [
                    {
                        "name": "user_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "k",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": max_k},
                    },
                    {
                        "name": "exclude",
                        "in": "query",
                        "description": "Comma-separated item ids left out.",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {"description": "Recommendations", "content": _JSON},
                    "400": _ERROR,
                    **_REFUSALS,
                },
            }
        },
        "/stats/global": {
            "get": {
                "summary": "This worker's global statistics (events counted, top popular items "
                "with counts, co-visitation of the top items), to compare across workers",
                "parameters": [
                    {
                        "name": "k",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": max_k},
                    }
                ],
                "responses": {
                    "200": {"description": "Statistics", "content": _JSON},
                    "400": _ERROR,
                    **_REFUSALS,
                },
            }
        },
        "/events": {
            "post": {
                "summary": "Validate one event and produce it to the events topic",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _EVENT},
                        "application/msgpack": {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                "responses": {
                    "202": {"description": "On the broker", "content": _JSON},
                    "400": {**_ERROR, "description": "Invalid: `reason` says why"},
                    "413": {**_ERROR, "description": "Over the size limit"},
                    **_REFUSALS,
                },
            }
        },
    }


def openapi_document(routes: Iterable[AbstractRoute], max_k: int) -> dict[str, Any]:
    """The document for the app's ``routes`` (aiohttp router order)."""
    documented = _operations(max_k)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        path = route.resource.canonical if route.resource is not None else None
        method = route.method.lower()
        if path is None or method in {"head", "options", "*"}:
            continue
        if path in documented:
            paths[path] = documented[path]
            continue
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", path)
        ]
        paths.setdefault(path, {})[method] = {
            "summary": "Faust built-in view (undocumented)",
            "parameters": params,
            "responses": {"200": {"description": "OK"}, **_REFUSALS},
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "streamrec worker", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }
