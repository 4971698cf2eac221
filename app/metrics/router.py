"""GET /metrics in the Prometheus text format, and `install_metrics(app)` that wires it up."""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from app.auth.deps import WWW_AUTHENTICATE_HEADER
from app.errors import Unauthorized
from app.metrics.collector import DatabaseCollector
from app.metrics.http import HttpMetrics, RequestMetrics
from app.settings import Settings, get_settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

router = APIRouter(tags=["health"])


def multiprocess_dir() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR when set: several API processes share their metrics there."""
    return os.environ.get(MULTIPROC_ENV) or None


class _Forward(Collector):
    """Another registry's metrics, as one collector of the scrape's registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield from self.source.collect()


def check_metrics_token(settings: Settings, token: str | None) -> None:
    """Passes when EMBEDTUNE_METRICS_TOKEN is unset or `token` is it; 401 otherwise. Checked
    by app.security.guard before the route, where failures are throttled like other
    credentials."""
    if settings.metrics_token is None:
        return
    expected = settings.metrics_token.get_secret_value()
    if token is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthorized(
            "GET /metrics needs the metrics token: send `Authorization: Bearer <token>` "
            "(EMBEDTUNE_METRICS_TOKEN)."
        )


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format.",
        },
        401: {
            "description": "EMBEDTUNE_METRICS_TOKEN is set and the request lacks it.",
            "headers": WWW_AUTHENTICATE_HEADER,
        },
    },
)
def metrics(request: Request) -> PlainTextResponse:
    """Prometheus metrics: HTTP requests by route and status, jobs by status, queue depth, live
    workers, failed jobs by error code. Open unless EMBEDTUNE_METRICS_TOKEN is set; then it
    needs `Authorization: Bearer <token>`."""
    settings = get_settings()
    registry = CollectorRegistry()
    folder = multiprocess_dir()
    if folder:
        MultiProcessCollector(registry, folder)
    else:
        registry.register(_Forward(request.app.state.http_metrics.registry))
    registry.register(DatabaseCollector(settings))
    return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def install_metrics(app: FastAPI) -> None:
    """Time every request (outermost middleware: the guard's refusals count too) and serve
    GET /metrics."""
    folder = multiprocess_dir()
    if folder:
        os.makedirs(folder, exist_ok=True)
    http = HttpMetrics()
    app.state.http_metrics = http
    app.add_middleware(RequestMetrics, metrics=http)
    app.include_router(router)
