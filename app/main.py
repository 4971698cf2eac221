"""create_app(): routers, error handlers, and the background dispatcher."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import health
from app.auth import router as admin_router
from app.datasets import router as datasets_router
from app.db.session import unit_of_work
from app.errors import install_error_handlers, install_openapi_errors
from app.idempotency.service import purge_expired
from app.jobs import router as jobs_router
from app.jobs.dispatch import dispatch_pending
from app.jobs.leases import sweep
from app.metrics.router import install_metrics
from app.security.docs import docs_router
from app.security.guard import RequestGuard
from app.security.redact import install_log_redaction
from app.settings import PRIVATE_UMASK, get_settings
from app.ui.router import install_ui
from app.webhooks import router as webhooks_router
from app.webhooks.sender import run_sender
from app.workers.service import prune as prune_heartbeats

log = logging.getLogger(__name__)


def _maintenance_loop(stop: threading.Event) -> None:
    # Jobs whose message never reached the broker (it was down) are sent again here, and jobs
    # whose worker died are taken back. Every step is safe with several API processes.
    settings = get_settings()
    while not stop.wait(settings.sweep_interval_s):
        try:
            sent = dispatch_pending()
            if sent:
                log.info("sent %d queued job(s) that had not reached the broker", sent)
            sweep(settings)
            with unit_of_work() as session:
                purge_expired(session)
                prune_heartbeats(session)
        except Exception:
            log.exception("job maintenance failed; will retry")


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    stop = threading.Event()
    thread = threading.Thread(
        target=_maintenance_loop, args=(stop,), name="maintenance", daemon=True
    )
    thread.start()
    # Webhook deliveries, on their own short interval (app.webhooks.sender).
    sender = threading.Thread(target=run_sender, args=(stop,), name="webhook-sender", daemon=True)
    sender.start()
    try:
        yield
    finally:
        stop.set()


def create_app() -> FastAPI:
    settings = get_settings()
    # Datasets, checkpoints and archives this process writes are the service user's alone.
    os.umask(PRIVATE_UMASK)
    app = FastAPI(
        title="Embedtune",
        version="0.1.0",
        description="Fine-tune sentence-transformer embedding models: upload triplets, "
        "create a job, poll it, download the model.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    tokens = (settings.admin_token, settings.metrics_token)
    install_log_redaction([t.get_secret_value() for t in tokens if t is not None])
    app.add_middleware(RequestGuard, settings=settings)
    install_metrics(app)
    install_error_handlers(app)
    app.include_router(docs_router(app))
    app.include_router(health.router)
    app.include_router(datasets_router.router)
    datasets_router.register_openapi_schemas(app)
    app.include_router(jobs_router.router)
    app.include_router(webhooks_router.router)
    app.include_router(admin_router.router)
    install_ui(app)
    install_openapi_errors(app)
    return app
