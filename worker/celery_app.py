"""The Celery worker's app: the shared app from app.queue with the worker's task registered."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init, worker_ready

from app.db.session import get_engine, get_sessionmaker
from app.queue import get_celery

celery_app = get_celery()
celery_app.conf.include = ["worker.tasks"]


@worker_process_init.connect
def _fresh_db_pool(**_: Any) -> None:
    # A forked child must not reuse the parent's database connections.
    get_sessionmaker.cache_clear()
    get_engine.cache_clear()


@worker_ready.connect
def _send_pending(**_: Any) -> None:
    from app.jobs.dispatch import dispatch_pending

    dispatch_pending(min_age_s=0)
