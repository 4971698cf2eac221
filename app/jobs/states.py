"""Job statuses, the table of allowed transitions, and the one function that changes status.

Every status change is a conditional UPDATE (`WHERE status IN <allowed sources>`), so two
processes racing for the same job cannot both win: the loser's update matches no row. The
winner's change is recorded on the job's timeline in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, update
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.jobs.events import EventType, record_event
from app.jobs.models import Job
from rules.phases import Phase


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


# The event a move to each status records, unless the caller names another.
DEFAULT_EVENTS: dict[JobStatus, EventType] = {
    JobStatus.QUEUED: EventType.RETRIED,
    JobStatus.RUNNING: EventType.STARTED,
    JobStatus.SUCCEEDED: EventType.SUCCEEDED,
    JobStatus.FAILED: EventType.FAILED,
    JobStatus.CANCELLED: EventType.CANCELLED,
}


# The phase a move to each status sets, in the same UPDATE: a claimed job starts by loading its
# model (the worker reports the phases after that), an ended one shows its terminal status.
PHASE_ON_ENTRY: dict[JobStatus, str] = {
    JobStatus.QUEUED: Phase.QUEUED.value,
    JobStatus.RUNNING: Phase.LOADING_MODEL.value,
    **{status: status.value for status in TERMINAL},
}


def shown_phase(status: str, phase: str | None) -> str | None:
    """The phase clients see: the recorded one, else (a job from before 0011) queued or the
    terminal status; None for such a job while it runs (nothing recorded which phase it is in)."""
    if phase is not None:
        return phase
    return None if status == JobStatus.RUNNING.value else status


def sources_of(target: JobStatus) -> frozenset[JobStatus]:
    return frozenset(src for src, dests in ALLOWED_TRANSITIONS.items() if target in dests)


def transition(
    session: Session,
    job_id: str,
    target: JobStatus,
    *,
    expected: JobStatus | None = None,
    where: Sequence[ColumnElement[bool]] = (),
    event: EventType | None = None,
    event_data: dict[str, Any] | None = None,
    **fields: Any,
) -> bool:
    """Move job `job_id` to `target`, setting `fields` in the same UPDATE, and record the event.

    The job's phase becomes PHASE_ON_ENTRY[target] unless `fields` names one. Only rows whose
    current status may move to `target` (and equals `expected`, when given, and
    match every condition in `where`, such as the attempt that holds the lease) are changed.
    Returns whether the job moved; False means another process got there first or the move is
    not allowed from the job's current status. The event (by default the one of DEFAULT_EVENTS)
    is added with the job's attempt after the update, only when the job moved.
    """
    allowed = sources_of(target)
    if expected is not None:
        allowed = allowed & {expected}
    if not allowed:
        return False
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.status.in_([s.value for s in allowed]), *where)
        .values(
            status=target.value,
            updated_at=utcnow(),
            **{"phase": PHASE_ON_ENTRY[target], **fields},
        )
        .returning(Job.attempt)
        .execution_options(synchronize_session=False)
    )
    moved = session.execute(stmt).all()
    if len(moved) != 1:
        return False
    record_event(
        session,
        job_id,
        event or DEFAULT_EVENTS[target],
        attempt=moved[0].attempt,
        **(event_data or {}),
    )
    return True
