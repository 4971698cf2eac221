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


def _is_redis(url: str) -> bool:
    return url.split("://", 1)[0] in {"redis", "rediss", "sentinel"}


def make_celery(settings: Settings) -> Celery:
    url, transport_options = broker_options(settings.broker_url)
    app = Celery("embedtune", broker=url, set_as_current=False)
    app.conf.update(
        broker_transport_options=transport_options,
        broker_connection_timeout=3,
        broker_connection_retry_on_startup=True,
        # Jobs without resources go here; app.jobs.dispatch names each job's own queue.
        task_default_queue=settings.queue,
        task_routes={RUN_JOB_TASK: {"queue": settings.queue}},
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        # Acknowledgement: early, when a pool process starts the task; recovery belongs to the
        # job row. A message only says "there is work". The task's first act is the conditional
        # claim of the row (queued -> running under a lease): from then on a lost worker's job
        # is queued and sent again by the API's sweeper within lease_s + sweep_interval_s. A
        # worker dying between the ack and the claim leaves the job queued with dispatched_at
        # set, and the sweeper sends it again after redispatch_after_s. Late acknowledgement
        # would only add a second recovery that does not fit hour-long jobs on many machines:
        # Redis redelivers a message unacknowledged past its visibility timeout (1 hour), so
        # every longer job went to a second worker (which the claim refused), and a timeout
        # above the longest job (EMBEDTUNE_MAX_TIME_LIMIT_S, a week) would hide a lost message
        # for a week, where the sweeper already re-sends it.
        task_acks_late=False,
        # One message per free pool process and none beyond. With early acknowledgement the
        # prefetch multiplier alone would not do it: it counts unacknowledged messages, so a
        # busy worker would fetch the next job and sit on it for hours while other workers are
        # idle. worker_disable_prefetch (Celery >= 5.5, Redis only) fetches only while fewer
        # messages than pool processes are reserved, and a running task stays reserved until it
        # returns. Other transports (the filesystem broker of the local mode: one worker) just
        # keep the multiplier.
        worker_prefetch_multiplier=1,
        worker_disable_prefetch=_is_redis(url),
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
