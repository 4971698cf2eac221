"""Request counts and latency histograms by method, route template and status: a pure ASGI
middleware, so streamed responses are timed to their last byte and nothing is buffered."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import compile_path

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The label of a path no route matches: raw paths would let any client grow the label set.
UNMATCHED = "<unmatched>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class HttpMetrics:
    """The request metrics of one app, in `registry` (in multiprocess mode the values go to
    PROMETHEUS_MULTIPROC_DIR as well, and scrapes read them from there)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["method", "route", "status"]
        self.requests = Counter(
            "embedtune_http_requests",
            "HTTP requests answered, by method, route template and status.",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "embedtune_http_request_duration_seconds",
            "Seconds from a request's arrival to its response's last byte.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = {"method": method, "route": route, "status": str(status)}
        self.requests.labels(**labels).inc()
        self.latency.labels(**labels).observe(seconds)


def route_template(scope: Scope) -> str:
    """The path template of the route that matched (`/jobs/{job_id}`), or, for a request the
    guard answered before routing, the documented path it would have matched; UNMATCHED when
    none does."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    app = scope.get("app")
    if app is None:
        return UNMATCHED
    templates: list[tuple[re.Pattern[str], str]] | None = getattr(
        app.state, "metrics_templates", None
    )
    if templates is None:
        try:
            documented = list(app.openapi().get("paths", {}))
        except Exception:
            documented = []
        templates = [(compile_path(template)[0], template) for template in documented]
        app.state.metrics_templates = templates
    raw = scope.get("path", "")
    for pattern, template in templates:
        if pattern.match(raw):
            return template
    return UNMATCHED


class RequestMetrics:
    """Times every HTTP request and counts it once its response has been sent (or failed)."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            method = scope.get("method", "GET")
            self.metrics.observe(
                method if method in METHODS else "other",
                route_template(scope),
                status,
                time.perf_counter() - started,
            )
