"""Run one job: claim the row, build the spec, run the pipeline, store the model, finish.

Every path out of `execute_job` leaves the job in a terminal status, queued again (handed back
by a worker that is shutting down), or untouched (another delivery already claimed it, or this
attempt lost its lease). Every write that ends an attempt is fenced by the attempt number, so an
attempt that lost its lease can never overwrite the outcome of the attempt that replaced it.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from app.db.base import utcnow
from app.db.session import unit_of_work
from app.jobs.dispatch import dispatch
from app.jobs.leases import remove_checkpoints
from app.jobs.models import Job
from app.jobs.states import TERMINAL, JobStatus, transition
from app.settings import Settings, get_settings
from app.storage import StorageError, get_store, model_key
from app.storage.scratch import job_work_dir
from worker import telemetry
from worker.attempt import Attempt, injected_oom_step, pause_if_injected
from worker.metrics import MetricPointWriter
from worker.progress import ThrottledProgressWriter
from worker.specs import build_spec
from worker.store_io import fetch_checkpoint, latest_checkpoint, retrying, store_model
from worker.timings import add_card_timings, job_timings, queued_seconds
from worker.training.checkpoints import checkpoint_step
from worker.training.errors import TrainingError, TrainingStopped
from worker.training.models import short_reason
from worker.training.spec import CheckpointPolicy

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


# The attempt running in this process, for the SIGTERM handler (worker.celery_app).
current_attempt: Attempt | None = None


def _claim(job_id: str, worker_name: str, settings: Settings) -> int | None:
    """Move the job from queued to running under a new attempt and lease; its attempt number,
    or None when it is not queued (another delivery has it, or it finished or was cancelled)."""
    try:
        found = latest_checkpoint(get_store(), job_id)
    except StorageError:
        found = None  # only the event's detail; the run looks again, retrying the store
    with unit_of_work() as session:
        claimed = transition(
            session,
            job_id,
            JobStatus.RUNNING,
            expected=JobStatus.QUEUED,
            started_at=func.coalesce(Job.started_at, utcnow()),
            attempt=Job.attempt + 1,
            worker=worker_name[:200],
            lease_expires_at=utcnow() + timedelta(seconds=settings.lease_s),
            handback_requested_at=None,
            # Not the worker's name: it holds a hostname, which clients must not see (it is
            # on the job row and in the worker log).
            event_data={"resumed_from_step": found[1] if found else None},
        )
        if not claimed:
            return None
        return int(session.scalar(select(Job.attempt).where(Job.id == job_id)) or 0)


def _finish(job_id: str, attempt: int, target: JobStatus, what: str, **fields: Any) -> bool:
    """Move the job out of running, only while this attempt holds it (retried through database
    outages)."""

    def write() -> bool:
        with unit_of_work() as session:
            return transition(
                session,
                job_id,
                target,
                expected=JobStatus.RUNNING,
                where=[Job.attempt == attempt],
                lease_expires_at=None,
                **fields,
            )

    return _retrying(write, f"{what} job {job_id}")


def _fail(job_id: str, attempt: int, code: str, message: str) -> None:
    _finish(
        job_id,
        attempt,
        JobStatus.FAILED,
        "fail",
        finished_at=utcnow(),
        error_code=code,
        error_message=message[:2000],
        event_data={"code": code},
    )


def _time_limit(settings: Settings, hyperparameters: dict[str, Any]) -> float:
    given = hyperparameters.get("time_limit_s")
    return float(min(given, settings.max_time_limit_s) if given else settings.max_time_limit_s)


def execute_job(job_id: str, worker_name: str, settings: Settings | None = None) -> None:
    global current_attempt
    settings = settings or get_settings()
    attempt = _retrying(lambda: _claim(job_id, worker_name, settings), f"claim job {job_id}")
    if attempt is None:
        log.info("job %s is not queued (already claimed or finished); nothing to do", job_id)
        return
    log.info("job %s attempt %d claimed by %s", job_id, attempt, worker_name)
    with unit_of_work() as session:
        row = session.execute(select(Job.hyperparameters, Job.name).where(Job.id == job_id)).one()
    work_dir = job_work_dir(settings, job_id)
    keep_checkpoints = False
    with (
        telemetry.running_job(),
        Attempt(
            job_id,
            attempt,
            lease_s=settings.lease_s,
            time_limit_s=_time_limit(settings, dict(row.hyperparameters or {})),
            oom_at_step=injected_oom_step(row.name),
        ) as control,
    ):
        current_attempt = control
        try:
            _run_claimed(job_id, attempt, settings, work_dir, control)
        except TrainingStopped as stop:
            keep_checkpoints = _stopped(job_id, attempt, settings, control, stop, worker_name)
        except TrainingError as exc:
            log.warning("job %s failed: %s: %s", job_id, exc.code, exc.message)
            _fail(job_id, attempt, exc.code, exc.message)
        except Exception as exc:
            log.exception("job %s failed with an unexpected error", job_id)
            _fail(
                job_id,
                attempt,
                "internal_error",
                # Paths stripped: errors reach clients, server paths must not.
                f"{type(exc).__name__}: {short_reason(exc, 500)} (the worker log has the "
                "traceback)",
            )
        finally:
            current_attempt = None
            shutil.rmtree(work_dir, ignore_errors=True)
            if not keep_checkpoints:
                remove_checkpoints(job_id)
    if telemetry.enabled():
        _observe_end(job_id, attempt)


def _observe_end(job_id: str, attempt: int) -> None:
    """Feed the worker's metrics when this attempt ended the job; never fails the job."""
    try:
        with unit_of_work() as session:
            row = session.execute(
                select(
                    Job.status, Job.attempt, Job.started_at, Job.finished_at, Job.error_code
                ).where(Job.id == job_id)
            ).one()
        if row.attempt != attempt or JobStatus(row.status) not in TERMINAL:
            return
        duration = None
        if row.started_at is not None and row.finished_at is not None:
            duration = (row.finished_at - row.started_at).total_seconds()
        telemetry.job_ended(row.status, duration, row.error_code)
    except Exception:
        log.warning("could not record the metrics of job %s", job_id, exc_info=True)


def _stopped(
    job_id: str,
    attempt: int,
    settings: Settings,
    control: Attempt,
    stop: TrainingStopped,
    worker_name: str,
) -> bool:
    """Record why the run stopped early. Returns whether the checkpoints are to be kept."""
    log.info("job %s stopped at step %d: %s", job_id, stop.step, stop.reason)
    if stop.reason == "cancelled":
        _finish(
            job_id,
            attempt,
            JobStatus.CANCELLED,
            "cancel",
            finished_at=utcnow(),
            event_data={"reason": "cancel requested", "step": stop.step},
        )
        return False
    if stop.reason == "timeout":
        _fail(
            job_id,
            attempt,
            "timeout",
            f"The job ran {control.running_s:.0f} s, past its time limit of "
            f"{control.time_limit_s:.0f} s, and was stopped at step {stop.step}. Raise "
            f"hyperparameters.time_limit_s (at most {settings.max_time_limit_s} s on this "
            "server) or train for fewer steps (epochs, max_steps).",
        )
        return False
    if stop.reason == "handed_back":
        handed_back = _finish(
            job_id,
            attempt,
            JobStatus.QUEUED,
            "hand back",
            dispatched_at=None,
            handback_requested_at=None,
            event_data={"reason": "handed_back", "step": stop.step},
        )
        if handed_back:
            dispatch(job_id)
        return True
    # lease_lost: the job is no longer this attempt's; the one that holds it owns its files.
    return True


def _checkpoint_policy(
    settings: Settings, job_id: str, attempt: int, work_dir: Path
) -> CheckpointPolicy:
    """Checkpoints are written in this machine's work folder and stored under the attempt's
    own prefix (an attempt that lost its lease but has not noticed yet cannot overwrite the
    checkpoints of the attempt that replaced it). The latest complete one of any attempt is
    fetched from the store to resume from: the scratch folder may be empty, a new machine."""
    store = get_store()
    found = retrying("to look for the job's checkpoints", lambda: latest_checkpoint(store, job_id))
    resume = None
    if found is not None:
        prefix = found[0]
        resume = retrying(
            "to fetch the checkpoint to resume from",
            lambda: fetch_checkpoint(store, prefix, work_dir / "resume"),
        )
    return CheckpointPolicy(
        dir=work_dir / "checkpoints" / f"attempt-{attempt}",
        every_s=settings.checkpoint_every_s,
        every_steps=settings.checkpoint_every_steps,
        resume_from=resume,
    )


def _run_claimed(
    job_id: str, attempt: int, settings: Settings, work_dir: Path, control: Attempt
) -> None:
    # Imported here: loading torch is the slow part of a job, not of the worker's start.
    from worker.launch import run_training

    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    checkpoints = _checkpoint_policy(settings, job_id, attempt, work_dir)
    with unit_of_work() as session:
        job = session.get(Job, job_id)
        assert job is not None
        spec = retrying(
            "to fetch the job's datasets",
            lambda: build_spec(
                session, settings, job, work_dir, work_dir / "model", checkpoints=checkpoints
            ),
        )
        hyperparameters = dict(job.hyperparameters)
        job_name = job.name
        devices = int((job.resources or {}).get("gpus") or 1)

    writer = ThrottledProgressWriter(job_id, settings.progress_interval_s, attempt=attempt)
    points = MetricPointWriter(job_id, settings.progress_interval_s, attempt=attempt)
    started = time.monotonic()
    try:
        result = run_training(
            spec,
            writer,
            points,
            control,
            devices=devices,
            job_id=job_id,
            attempt=attempt,
            work_dir=work_dir,
            phases=writer.phase,
        )
        returned = time.monotonic()
    finally:
        # What was recorded until the end (or the failure) is kept; a failed write is logged.
        points.flush()
    resumed = spec.checkpoints.resume_from if spec.checkpoints else None
    telemetry.training_finished(
        result.total_steps - ((checkpoint_step(resumed) or 0) if resumed else 0),
        time.monotonic() - started,
    )
    queued_s = queued_seconds(job_id, attempt)
    run_s = returned - control.claimed_at
    add_card_timings(result.model_dir, result, queued_s=queued_s, run_s=run_s)
    pause_if_injected(job_name, "store_model")
    # This attempt's own key: it becomes the job's model only through the fenced finish below.
    key = model_key(job_id, attempt)
    archive = store_model(key, result.model_dir)

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

    succeeded = _finish(
        job_id,
        attempt,
        JobStatus.SUCCEEDED,
        "finish",
        finished_at=utcnow(),
        metrics=metrics,
        holdout=holdout,
        progress=progress,
        hyperparameters=hyperparameters,
        hub_revisions={f"{role}_dataset": sha for role, sha in result.hub_revisions.items()}
        or None,
        model_size_bytes=archive.size_bytes,
        model_sha256=archive.sha256,
        model_key=key,
        timings=job_timings(
            result, queued_s=queued_s, run_s=run_s, after_s=time.monotonic() - returned
        ),
        event_data={"sha256": archive.sha256, "total_steps": result.total_steps},
    )
    if not succeeded:
        log.warning("job %s left running before it finished; its model was not recorded", job_id)
        with contextlib.suppress(StorageError):
            get_store().delete(key)  # never the recorded model: that has another attempt's key
    else:
        log.info("job %s succeeded: %s", job_id, result.metrics)
