"""The Celery worker's app: the shared app from app.queue with the worker's task registered."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from celery.signals import (
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)
from sqlalchemy import update

from app.db.base import utcnow
from app.db.session import get_engine, get_sessionmaker, unit_of_work
from app.jobs.models import Job
from app.jobs.states import JobStatus
from app.queue import get_celery
from app.settings import PRIVATE_UMASK, get_settings
from worker import telemetry
from worker.heartbeat import Heartbeat

log = logging.getLogger(__name__)

celery_app = get_celery()
celery_app.conf.include = ["worker.tasks"]


@worker_init.connect
def _private_files(**_: Any) -> None:
    # Checkpoints, models and archives the jobs write are the service user's alone (the pool's
    # processes inherit the umask).
    os.umask(PRIVATE_UMASK)


@worker_init.connect
def _serve_metrics(**_: Any) -> None:
    # Before the pool forks: the job processes inherit the multiprocess metrics folder.
    port = get_settings().worker_metrics_port
    if telemetry.prepare(port) is None or port is None:
        return
    try:
        telemetry.serve(port)
    except OSError:
        # A port in use must not keep the worker from training.
        log.exception("could not serve worker metrics on port %d", port)


@worker_init.connect
def _preload_training_libraries(**_: Any) -> None:
    # Each job runs in a fresh pool process (so its GPU memory goes back to the driver when it
    # ends). Importing torch, transformers and sentence-transformers takes seconds; done once
    # here, in the main process before the pool forks, every job's process starts with them.
    # Importing does not initialise CUDA, so forking afterwards is safe.
    started = time.monotonic()
    import sentence_transformers.sentence_transformer.losses  # noqa: F401
    import sentence_transformers.sentence_transformer.training_args  # noqa: F401

    import worker.training.pipeline  # noqa: F401

    log.info("training libraries loaded in %.1fs", time.monotonic() - started)


@worker_process_init.connect
def _fresh_db_pool(**_: Any) -> None:
    # A forked child must not reuse the parent's database connections.
    get_sessionmaker.cache_clear()
    get_engine.cache_clear()
    signal.signal(signal.SIGTERM, _hand_back_on_sigterm)


def _hand_back_on_sigterm(signum: int, frame: Any) -> None:
    # A pool process told to stop (systemd, a killed process group): the running job
    # checkpoints at its next step and goes back to the queue. With no job, stop as usual.
    from worker import runner

    attempt = runner.current_attempt
    if attempt is not None:
        attempt.request_handback()
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def worker_name(node: str) -> str:
    """How jobs record the worker running them: host and Celery node name."""
    return f"{socket.gethostname()}:{node}"


@worker_shutting_down.connect
def _request_handbacks(sender: str, **_: Any) -> None:
    # The main process got SIGTERM (a deploy, `docker stop`): a warm shutdown waits for the
    # running jobs, so ask them, through their rows, to checkpoint and hand themselves back.
    # Runs in a signal handler: the database work goes to a thread.
    def request() -> None:
        try:
            with unit_of_work() as session:
                session.execute(
                    update(Job)
                    .where(
                        Job.status == JobStatus.RUNNING.value,
                        Job.worker == worker_name(sender)[:200],
                    )
                    .values(handback_requested_at=utcnow())
                )
        except Exception:
            log.exception("could not ask the running jobs to hand themselves back")

    threading.Thread(target=request, name="handback", daemon=False).start()


# This worker's row in worker_heartbeats, kept fresh while the worker runs.
_heartbeat: Heartbeat | None = None


def consumed_queues(consumer: Any) -> list[str]:
    """The queues the worker really consumes (`--queues`), as Celery selected them."""
    return sorted(consumer.app.amqp.queues.consume_from)


@worker_ready.connect
def _start_heartbeat(sender: Any, **_: Any) -> None:
    global _heartbeat
    settings = get_settings()
    controller = getattr(sender, "controller", None)
    concurrency = int(getattr(controller, "concurrency", None) or settings.worker_concurrency)
    _heartbeat = Heartbeat(
        settings,
        sender.hostname,
        concurrency,
        # What `embedtune worker` chose (worker.cli exports it); 1 device when started otherwise.
        gpu_type=settings.worker_gpu_type,
        gpus=settings.worker_gpus or 1,
        queues=consumed_queues(sender),
    )
    _heartbeat.start()


@worker_shutting_down.connect
def _stop_heartbeat(**_: Any) -> None:
    # A worker shutting down takes no new job: it stops counting at once. Runs in a signal
    # handler: the database work goes to a thread.
    heartbeat = _heartbeat
    if heartbeat is not None:
        threading.Thread(target=heartbeat.stop, name="heartbeat-stop", daemon=False).start()


@worker_shutdown.connect
def _worker_gone(**_: Any) -> None:
    if _heartbeat is not None:
        _heartbeat.stop()
    telemetry.cleanup()


@worker_ready.connect
def _send_pending(**_: Any) -> None:
    from app.jobs.dispatch import dispatch_pending

    dispatch_pending(min_age_s=0)
