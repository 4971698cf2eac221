"""The Celery app both sides share: the API only sends "there is work" messages through it.

Importing this module imports no torch; the worker registers its task on the same app.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from celery import Celery

from app.settings import Settings, get_settings

RUN_JOB_TASK = "embedtune.run_job"
FILESYSTEM_SCHEME = "filesystem://"


def broker_options(broker_url: str) -> tuple[str, dict[str, Any]]:
    """Kombu URL and transport options for a broker setting.

    `filesystem://PATH` is kombu's serverless filesystem transport with PATH as its folder.
    """
    if broker_url.startswith(FILESYSTEM_SCHEME):
        folder = Path(broker_url[len(FILESYSTEM_SCHEME) :] or "./embedtune-data/broker")
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        queue_dir = str((folder / "queue").resolve())
        return "filesystem://", {
            "data_folder_in": queue_dir,
            "data_folder_out": queue_dir,
            "processed_folder": str((folder / "processed").resolve()),
            "control_folder": str((folder / "control").resolve()),
            "store_processed": False,
        }
    # Fail fast instead of hanging the API when Redis is unreachable.
    return broker_url, {"socket_connect_timeout": 3, "socket_timeout": 5}


def make_celery(settings: Settings) -> Celery:
    url, transport_options = broker_options(settings.broker_url)
    app = Celery("embedtune", broker=url, set_as_current=False)
    app.conf.update(
        broker_transport_options=transport_options,
        broker_connection_timeout=3,
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.queue,
        task_routes={RUN_JOB_TASK: {"queue": settings.queue}},
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        # A job runs for hours: take one message at a time, acknowledge it only when the task
        # returns, and put it back if the worker process dies. A redelivered message is harmless
        # because the task claims the job row with a conditional update first.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A fresh child process per job returns all GPU memory to the driver when it exits.
        worker_max_tasks_per_child=1,
        worker_concurrency=settings.worker_concurrency,
        worker_hijack_root_logger=False,
        # Publishing gives up after ~2 s when the broker is down; the job stays in the
        # database and is sent again by the dispatcher.
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 1,
        },
    )
    if url == "filesystem://":
        # The filesystem transport has no fanout exchange for remote control and events.
        app.conf.worker_enable_remote_control = False
    return app


@lru_cache
def get_celery() -> Celery:
    return make_celery(get_settings())


def broker_reachable(timeout: float = 3.0) -> bool:
    try:
        with get_celery().connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
        return True
    except Exception:
        return False
