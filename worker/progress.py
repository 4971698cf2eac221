"""Persist training progress to the job row, at most once per interval."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

from sqlalchemy import update

from app.db.session import unit_of_work
from app.jobs.models import Job
from app.jobs.states import JobStatus
from app.settings import get_settings
from app.webhooks.outbox import enqueue_progress
from worker.training.spec import Progress

log = logging.getLogger(__name__)


class ThrottledProgressWriter:
    """A ProgressReporter that writes to the database at most every `interval_s` seconds."""

    def __init__(
        self, job_id: str, interval_s: float, webhook_interval_s: float | None = None
    ) -> None:
        self.job_id = job_id
        self.interval_s = interval_s
        self.webhook_interval_s = (
            get_settings().webhook_progress_interval_s
            if webhook_interval_s is None
            else webhook_interval_s
        )
        self._last_write = 0.0
        self._last_webhook: float | None = None
        self.latest: Progress | None = None

    def __call__(self, progress: Progress) -> None:
        self.latest = progress
        now = time.monotonic()
        if now - self._last_write < self.interval_s:
            return
        self._last_write = now
        try:
            with unit_of_work() as session:
                moved = session.execute(
                    update(Job)
                    .where(Job.id == self.job_id, Job.status == JobStatus.RUNNING.value)
                    .values(progress=asdict(progress))
                    .execution_options(synchronize_session=False)
                )
                if getattr(moved, "rowcount", 0) == 1 and self._webhook_due(now):
                    # job.progress webhooks: at most one per webhook_interval_s, in the same
                    # transaction as the progress it reports.
                    enqueue_progress(session, self.job_id)
                    self._last_webhook = now
        except Exception:
            # Losing one progress write must not stop a training run.
            log.warning("could not record progress of job %s", self.job_id, exc_info=True)

    def _webhook_due(self, now: float) -> bool:
        return self._last_webhook is None or now - self._last_webhook >= self.webhook_interval_s
