"""Persist a job's training time series (MetricPoints) to `job_metric_points`.

Idempotent: a point is keyed by (job_id, kind, step) and inserted with the dialect's
`INSERT ... ON CONFLICT DO NOTHING`, so a retried attempt that sends the same step again leaves the
first one in place. Train points are buffered and written at most every `interval_s` seconds; an
eval point (rare, and what a client polls for) is written at once with whatever is buffered.
A failed write is logged and retried with the next one: it never stops a training run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.session import unit_of_work
from app.jobs.events import EventType, record_event
from app.jobs.models import JobMetricPoint
from worker.training.spec import MetricPoint

log = logging.getLogger(__name__)

# Points kept for the next write while the database is unavailable; the oldest go first.
MAX_BUFFERED = 10_000


def _json_number(value: Any) -> Any:
    """JSON has no NaN or infinity (PostgreSQL's JSONB rejects them): those become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def insert_points(
    session: Session, job_id: str, points: list[MetricPoint], attempt: int | None = None
) -> None:
    """Insert `points`, skipping any (job_id, kind, step) already stored; each eval point is
    also an `evaluated` event on the job's timeline."""
    if not points:
        return
    for p in points:
        if p.kind == "eval":
            values = {k: _json_number(v) for k, v in p.values.items()}
            record_event(
                session, job_id, EventType.EVALUATED, attempt=attempt, step=p.step, metrics=values
            )
    rows = [
        {
            "job_id": job_id,
            "kind": p.kind,
            "step": p.step,
            "epoch": p.epoch if math.isfinite(p.epoch) else 0.0,
            "values": {k: _json_number(v) for k, v in p.values.items()},
            "created_at": utcnow(),
        }
        for p in points
    ]
    # One row per key in a statement: PostgreSQL refuses to touch the same row twice in one
    # ON CONFLICT statement, and the last report of a step is the one to keep.
    unique = list({(r["kind"], r["step"]): r for r in rows}.values())
    dialect = session.get_bind().dialect.name
    keys = ["job_id", "kind", "step"]
    if dialect == "postgresql":
        session.execute(
            postgresql.insert(JobMetricPoint)
            .values(unique)
            .on_conflict_do_nothing(index_elements=keys)
        )
    elif dialect == "sqlite":
        session.execute(
            sqlite.insert(JobMetricPoint).values(unique).on_conflict_do_nothing(index_elements=keys)
        )
    else:  # pragma: no cover - Embedtune runs on PostgreSQL or SQLite
        session.execute(insert(JobMetricPoint).values(unique))


class MetricPointWriter:
    """A MetricsRecorder that writes a job's points to the database, throttled.

    Call `flush()` when training ends (also when it fails) to write what is still buffered.
    """

    def __init__(
        self,
        job_id: str,
        interval_s: float,
        session_scope: Callable[[], AbstractContextManager[Session]] = unit_of_work,
        clock: Callable[[], float] = time.monotonic,
        attempt: int | None = None,
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.interval_s = interval_s
        self._session_scope = session_scope
        self._clock = clock
        self._buffer: list[MetricPoint] = []
        self._last_write: float | None = None
        self.failed_writes = 0

    def __call__(self, point: MetricPoint) -> None:
        self._buffer.append(point)
        if len(self._buffer) > MAX_BUFFERED:
            del self._buffer[: len(self._buffer) - MAX_BUFFERED]
        due = self._last_write is None or self._clock() - self._last_write >= self.interval_s
        if point.kind == "eval" or due:
            self.flush()

    @property
    def pending(self) -> int:
        """Points not written yet."""
        return len(self._buffer)

    def flush(self) -> bool:
        """Write every buffered point. Returns False (and keeps them) when the write failed."""
        self._last_write = self._clock()
        if not self._buffer:
            return True
        points = list(self._buffer)
        try:
            with self._session_scope() as session:
                insert_points(session, self.job_id, points, self.attempt)
        except Exception:
            # Losing (or delaying) metric points must not stop a training run.
            self.failed_writes += 1
            log.warning(
                "could not record %d metric point(s) of job %s; will retry",
                len(points),
                self.job_id,
                exc_info=True,
            )
            return False
        del self._buffer[: len(points)]
        return True
