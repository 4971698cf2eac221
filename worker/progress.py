"""Persist training progress to the job row, at most once per interval."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

from sqlalchemy import update

from app.db.session import unit_of_work
from app.jobs.models import Job
from app.jobs.states import JobStatus
from worker.training.spec import Progress

log = logging.getLogger(__name__)


class ThrottledProgressWriter:
    """A ProgressReporter that writes to the database at most every `interval_s` seconds."""

    def __init__(self, job_id: str, interval_s: float) -> None:
        self.job_id = job_id
        self.interval_s = interval_s
        self._last_write = 0.0
        self.latest: Progress | None = None

    def __call__(self, progress: Progress) -> None:
        self.latest = progress
        now = time.monotonic()
        if now - self._last_write < self.interval_s:
            return
        self._last_write = now
        try:
            with unit_of_work() as session:
                session.execute(
                    update(Job)
                    .where(Job.id == self.job_id, Job.status == JobStatus.RUNNING.value)
                    .values(progress=asdict(progress))
                )
        except Exception:
            # Losing one progress write must not stop a training run.
            log.warning("could not record progress of job %s", self.job_id, exc_info=True)
