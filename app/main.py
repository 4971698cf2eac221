"""create_app(): routers, error handlers, and the background dispatcher."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import health
from app.datasets import router as datasets_router
from app.errors import install_error_handlers
from app.jobs import router as jobs_router
from app.jobs.dispatch import dispatch_pending

log = logging.getLogger(__name__)
DISPATCH_INTERVAL_S = 15.0


def _dispatch_loop(stop: threading.Event) -> None:
    # Jobs whose message never reached the broker (it was down) are sent again here.
    while not stop.wait(DISPATCH_INTERVAL_S):
        try:
            sent = dispatch_pending()
            if sent:
                log.info("sent %d queued job(s) that had not reached the broker", sent)
        except Exception:
            log.exception("dispatching pending jobs failed; will retry")


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=_dispatch_loop, args=(stop,), name="dispatcher", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


def create_app() -> FastAPI:
    app = FastAPI(
        title="Embedtune",
        version="0.1.0",
        description="Fine-tune sentence-transformer embedding models: upload triplets, "
        "create a job, poll it, download the model.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(datasets_router.router)
    app.include_router(jobs_router.router)
    return app
