"""Job statuses, the table of allowed transitions, and the one function that changes status.

Every status change is a conditional UPDATE (`WHERE status IN <allowed sources>`), so two
processes racing for the same job cannot both win: the loser's update matches no row.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.jobs.models import Job


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
)

# source -> the statuses it may move to. Terminal statuses move nowhere.
ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset(
        # running -> queued hands a job back for another attempt.
        {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED}
    ),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def sources_of(target: JobStatus) -> frozenset[JobStatus]:
    return frozenset(src for src, dests in ALLOWED_TRANSITIONS.items() if target in dests)


def transition(
    session: Session,
    job_id: str,
    target: JobStatus,
    *,
    expected: JobStatus | None = None,
    **fields: Any,
) -> bool:
    """Move job `job_id` to `target`, setting `fields` in the same UPDATE.

    Only rows whose current status may move to `target` (and equals `expected`, when given)
    are changed. Returns whether the job moved; False means another process got there first
    or the move is not allowed from the job's current status.
    """
    allowed = sources_of(target)
    if expected is not None:
        allowed = allowed & {expected}
    if not allowed:
        return False
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.status.in_([s.value for s in allowed]))
        .values(status=target.value, updated_at=utcnow(), **fields)
        .execution_options(synchronize_session=False)
    )
    result = session.execute(stmt)
    return bool(getattr(result, "rowcount", 0) == 1)
