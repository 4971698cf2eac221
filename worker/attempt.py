"""One attempt at a job, as its worker holds it: lease heartbeat, stop requests, checkpoints.

A background thread renews the attempt's lease every `poll_s` seconds with one conditional
UPDATE that also adds the running time and reads back the job's cancel and hand-back requests.
The training loop asks `stop_requested()` at every step and so sees a request within about
poll_s. When the UPDATE matches no row, the attempt no longer holds the job (the sweeper took it
back after missed heartbeats, or it was finished elsewhere): training stops and writes nothing.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, update
from sqlalchemy.exc import DBAPIError

from app.db.base import utcnow
from app.db.session import unit_of_work
from app.jobs.events import EventType, record_event
from app.jobs.models import Job
from app.jobs.states import JobStatus
from worker.training.spec import StopReason

log = logging.getLogger(__name__)

# Fault injection for tests and drills, set on a worker: EMBEDTUNE_FAULT_OOM=NAME:STEP raises
# the accelerator's out-of-memory error at step STEP of jobs named NAME, where a real one
# surfaces (inside the training loop). Other jobs on that worker run normally.
FAULT_OOM = "EMBEDTUNE_FAULT_OOM"


# EMBEDTUNE_FAULT_PAUSE=NAME:POINT stops (SIGSTOP) the job process of jobs named NAME when it
# reaches POINT (`store_model`: trained, model not yet stored), as a host that freezes there
# would; a test or drill resumes it with SIGCONT. Other jobs and points run normally.
FAULT_PAUSE = "EMBEDTUNE_FAULT_PAUSE"


def pause_if_injected(job_name: str | None, point: str) -> None:
    name, _, at = os.environ.get(FAULT_PAUSE, "").rpartition(":")
    if name and job_name == name and at == point:
        log.warning("pausing at %s (%s)", point, FAULT_PAUSE)
        os.kill(os.getpid(), signal.SIGSTOP)


def injected_oom_step(job_name: str | None) -> int | None:
    name, _, step = os.environ.get(FAULT_OOM, "").rpartition(":")
    if name and job_name == name and step.isdigit():
        return int(step)
    return None


def held(job_id: str, attempt: int) -> tuple[ColumnElement[bool], ...]:
    """The job row, only while `attempt` holds it."""
    return (Job.id == job_id, Job.status == JobStatus.RUNNING.value, Job.attempt == attempt)


def record_checkpoint(job_id: str, attempt: int, step: int, folder: Path) -> None:
    """A complete local checkpoint: upload it to the store (what a resume on any machine
    reads), then record its step on the job, fenced by the attempt. A store that stays down
    skips this checkpoint (training goes on; the next one or the final model may get through)."""
    from worker.store_io import StorageFailed, publish_checkpoint

    try:
        publish_checkpoint(job_id, attempt, folder)
    except StorageFailed as exc:
        log.warning("checkpoint %s of job %s not stored: %s", step, job_id, exc.message)
        return
    try:
        with unit_of_work() as session:
            moved = session.execute(
                update(Job)
                .where(*held(job_id, attempt))
                .values(checkpoint_step=step)
                .execution_options(synchronize_session=False)
            )
            if getattr(moved, "rowcount", 0) == 1:
                record_event(
                    session, job_id, EventType.CHECKPOINT_SAVED, attempt=attempt, step=step
                )
    except DBAPIError:
        # The checkpoint is in the store, which is what a resume reads; only the record is late.
        log.warning("could not record checkpoint %s of job %s", step, job_id)


class Attempt:
    """A RunControl backed by the job row. Use as a context manager around the run."""

    def __init__(
        self,
        job_id: str,
        attempt: int,
        *,
        lease_s: float,
        time_limit_s: float,
        oom_at_step: int | None = None,
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.lease_s = lease_s
        self.poll_s = min(2.0, lease_s / 3)
        self.time_limit_s = time_limit_s
        self.running_s = 0.0
        self._reason: StopReason | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{job_id}", daemon=True)
        self._last_beat = time.monotonic()
        # When the attempt began (it is made right after the claim): its timings count from here.
        self.claimed_at = self._last_beat
        self._steps = 0
        self._oom_at = oom_at_step

    def __enter__(self) -> Attempt:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    # RunControl -----------------------------------------------------------------------------

    def stop_requested(self) -> StopReason | None:
        self._steps += 1
        if self._oom_at is not None and self._steps >= self._oom_at:
            import torch

            raise torch.OutOfMemoryError(
                f"CUDA out of memory (injected by {FAULT_OOM} at step {self._oom_at})"
            )
        with self._lock:
            return self._reason

    def checkpoint_saved(self, step: int, path: Path) -> None:
        record_checkpoint(self.job_id, self.attempt, step, path)

    # Requests from this process ---------------------------------------------------------------

    def request_handback(self) -> None:
        """Stop at the next step with a checkpoint and give the job back (a worker shutting
        down). Safe to call from a signal handler."""
        self._set("handed_back")

    @property
    def reason(self) -> StopReason | None:
        with self._lock:
            return self._reason

    # Heartbeat --------------------------------------------------------------------------------

    def _held(self) -> tuple[ColumnElement[bool], ...]:
        return held(self.job_id, self.attempt)

    def _set(self, reason: StopReason) -> None:
        with self._lock:
            # A cancel outranks a time limit, which outranks a hand-back.
            order = ("lease_lost", "handed_back", "timeout", "cancelled")
            if self._reason is None or order.index(reason) > order.index(self._reason):
                self._reason = reason

    def beat(self) -> None:
        """Renew the lease once and read the job's requests."""
        now_mono = time.monotonic()
        elapsed = now_mono - self._last_beat
        now = utcnow()
        with unit_of_work() as session:
            row = session.execute(
                update(Job)
                .where(*self._held())
                .values(
                    lease_expires_at=now + timedelta(seconds=self.lease_s),
                    running_s=Job.running_s + elapsed,
                )
                .returning(Job.cancel_requested_at, Job.handback_requested_at, Job.running_s)
                .execution_options(synchronize_session=False)
            ).first()
        self._last_beat = now_mono
        if row is None:
            self._set("lease_lost")
            return
        self.running_s = float(row.running_s)
        if row.cancel_requested_at is not None:
            self._set("cancelled")
        if self.running_s >= self.time_limit_s:
            self._set("timeout")
        if row.handback_requested_at is not None:
            self._set("handed_back")

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.beat()
            except Exception:
                # The database may be back before the lease runs out; if not, the sweeper
                # takes the job back and the next beat finds the lease lost.
                log.warning("heartbeat of job %s failed; will retry", self.job_id, exc_info=True)
