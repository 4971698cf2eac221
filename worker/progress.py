"""Persist training progress and the run's phase to the job row.

Progress is written at most once per interval; a new phase at once (a run has a handful). Each
write is fenced by the attempt: one that lost the job writes nothing over its successor's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

from sqlalchemy import update

from app.db.session import unit_of_work
from app.jobs.models import Job
from app.jobs.states import JobStatus
from app.settings import get_settings
from app.webhooks.outbox import enqueue_progress
from rules.phases import Phase
from worker.attempt import held
from worker.training.spec import Progress

log = logging.getLogger(__name__)


class StepRate:
    """Steps per second over this attempt so far, on this process's monotonic clock, and the
    seconds the remaining steps take at that rate."""

    def __init__(self) -> None:
        self._first: tuple[int, float] | None = None  # (step, time) of the first report

    def observe(self, step: int, total_steps: int) -> tuple[float | None, float | None]:
        """(steps_per_s, eta_s) after a report of `step`; (None, None) before there is a rate."""
        now = time.monotonic()
        if self._first is None or step < self._first[0]:
            self._first = (step, now)
            return None, None
        steps, seconds = step - self._first[0], now - self._first[1]
        if steps <= 0 or seconds <= 0:
            return None, None
        rate = steps / seconds
        return round(rate, 4), round(max(0, total_steps - step) / rate, 1)


class ThrottledProgressWriter:
    """A ProgressReporter (and PhaseReporter: `phase`) for the job row of attempt `attempt`.

    Progress goes to the database at most every `interval_s` seconds, with the phase, the step
    rate and the time left (eta_s); `phase` writes the new phase at once, with the latest
    progress. Without `attempt`, writes are fenced by the running status alone.
    """

    def __init__(
        self,
        job_id: str,
        interval_s: float,
        webhook_interval_s: float | None = None,
        *,
        attempt: int | None = None,
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.interval_s = interval_s
        self.webhook_interval_s = (
            get_settings().webhook_progress_interval_s
            if webhook_interval_s is None
            else webhook_interval_s
        )
        self._last_write = 0.0
        self._last_webhook: float | None = None
        self._rate = StepRate()
        self._shown: dict[str, Any] | None = None
        self.latest: Progress | None = None
        self.current_phase: Phase | None = None

    def __call__(self, progress: Progress) -> None:
        self.latest = progress
        steps_per_s, eta_s = self._rate.observe(progress.step, progress.total_steps)
        self._shown = dict(
            asdict(progress),
            phase=self.current_phase.value if self.current_phase else None,
            steps_per_s=steps_per_s,
            eta_s=eta_s,
        )
        now = time.monotonic()
        if now - self._last_write < self.interval_s:
            return
        # Only progress counts for the throttle: the first progress after a phase is written.
        self._last_write = now
        self._write(now, progress=self._shown)

    def phase(self, phase: Phase) -> None:
        """The run entered `phase`: record it now (and in the progress it shows, if any)."""
        self.current_phase = phase
        values: dict[str, Any] = {"phase": phase.value}
        if self._shown is not None:
            self._shown = dict(self._shown, phase=phase.value)
            values["progress"] = self._shown
        self._write(time.monotonic(), **values)

    def _where(self) -> tuple[Any, ...]:
        if self.attempt is None:
            return (Job.id == self.job_id, Job.status == JobStatus.RUNNING.value)
        return held(self.job_id, self.attempt)

    def _write(self, now: float, **values: Any) -> None:
        try:
            with unit_of_work() as session:
                moved = session.execute(
                    update(Job)
                    .where(*self._where())
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
                if (
                    "progress" in values
                    and getattr(moved, "rowcount", 0) == 1
                    and self._webhook_due(now)
                ):
                    # job.progress webhooks: at most one per webhook_interval_s, in the same
                    # transaction as the progress it reports.
                    enqueue_progress(session, self.job_id)
                    self._last_webhook = now
        except Exception:
            # Losing one progress write must not stop a training run.
            log.warning("could not record progress of job %s", self.job_id, exc_info=True)

    def _webhook_due(self, now: float) -> bool:
        return self._last_webhook is None or now - self._last_webhook >= self.webhook_interval_s
