"""Run one job: claim the row, build the spec, run the pipeline, store the model, finish.

Every path out of `execute_job` leaves the job in a terminal status (or untouched, when
another delivery already claimed it).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError

from app.db.base import utcnow
from app.db.session import unit_of_work
from app.jobs.models import Job
from app.jobs.states import JobStatus, transition
from app.settings import Settings, get_settings
from app.storage import job_dir, model_archive_path
from worker.metrics import MetricPointWriter
from worker.progress import ThrottledProgressWriter
from worker.specs import build_spec
from worker.training.errors import TrainingError

log = logging.getLogger(__name__)
T = TypeVar("T")


def _retrying(write: Callable[[], T], what: str, attempts: int = 6) -> T:
    """Retry a database write through short outages rather than lose a job's result."""
    delay = 1.0
    for attempt in range(1, attempts + 1):
        try:
            return write()
        except DBAPIError:
            if attempt == attempts:
                raise
            log.warning("database write failed (%s), retrying in %.0fs", what, delay)
            time.sleep(delay)
            delay = min(delay * 2, 30)
    raise AssertionError("unreachable")


def _claim(job_id: str, worker_name: str) -> bool:
    with unit_of_work() as session:
        return transition(
            session,
            job_id,
            JobStatus.RUNNING,
            expected=JobStatus.QUEUED,
            started_at=utcnow(),
            attempt=Job.attempt + 1,
            worker=worker_name[:200],
            progress=None,
        )


def _fail(job_id: str, code: str, message: str) -> None:
    def write() -> bool:
        with unit_of_work() as session:
            return transition(
                session,
                job_id,
                JobStatus.FAILED,
                finished_at=utcnow(),
                error_code=code,
                error_message=message[:2000],
            )

    _retrying(write, f"fail job {job_id}")


def execute_job(job_id: str, worker_name: str, settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    if not _retrying(lambda: _claim(job_id, worker_name), f"claim job {job_id}"):
        log.info("job %s is not queued (already claimed or finished); nothing to do", job_id)
        return
    log.info("job %s claimed by %s", job_id, worker_name)
    work_dir = job_dir(settings, job_id) / "work"
    try:
        _run_claimed(job_id, settings, work_dir)
    except TrainingError as exc:
        log.warning("job %s failed: %s: %s", job_id, exc.code, exc.message)
        _fail(job_id, exc.code, exc.message)
    except Exception as exc:
        log.exception("job %s failed with an unexpected error", job_id)
        _fail(
            job_id,
            "internal_error",
            f"{type(exc).__name__}: {str(exc)[:500]} (the worker log has the traceback)",
        )
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _run_claimed(job_id: str, settings: Settings, work_dir: Any) -> None:
    # Imported here: loading torch is the slow part of a job, not of the worker's start.
    from worker.training.archive import make_archive
    from worker.training.pipeline import run

    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    with unit_of_work() as session:
        job = session.get(Job, job_id)
        assert job is not None
        spec = build_spec(session, settings, job, work_dir, work_dir / "model")
        hyperparameters = dict(job.hyperparameters)

    writer = ThrottledProgressWriter(job_id, settings.progress_interval_s)
    points = MetricPointWriter(job_id, settings.progress_interval_s)
    try:
        result = run(spec, writer, record=points)
    finally:
        # What was recorded until the end (or the failure) is kept; a failed write is logged.
        points.flush()
    archive = make_archive(result.model_dir, model_archive_path(settings, job_id))

    last = writer.latest
    progress = {
        "step": result.total_steps,
        "total_steps": result.total_steps,
        "epoch": last.epoch if last else float(spec.hyperparameters.epochs),
        "loss": last.loss if last else None,
    }
    hyperparameters["precision"] = result.precision
    hyperparameters["max_seq_length"] = result.max_seq_length
    if hyperparameters.get("eval_steps") is None:
        hyperparameters["eval_steps"] = result.eval_steps
    metrics = dict(result.metrics, evaluated_on=result.evaluated_on) if result.metrics else None
    holdout = asdict(result.holdout) if result.holdout is not None else None

    def write() -> bool:
        with unit_of_work() as session:
            return transition(
                session,
                job_id,
                JobStatus.SUCCEEDED,
                expected=JobStatus.RUNNING,
                finished_at=utcnow(),
                metrics=metrics,
                holdout=holdout,
                progress=progress,
                hyperparameters=hyperparameters,
                model_size_bytes=archive.size_bytes,
                model_sha256=archive.sha256,
            )

    if not _retrying(write, f"finish job {job_id}"):
        log.warning("job %s left running before it finished; its model was not recorded", job_id)
    else:
        log.info("job %s succeeded: %s", job_id, result.metrics)
