"""A job's timeline: typed events, written in the same transaction as what they describe."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import ValidationFailed
from app.jobs.models import JobEvent


class EventType(StrEnum):
    QUEUED = "queued"
    STARTED = "started"
    CHECKPOINT_SAVED = "checkpoint_saved"
    EVALUATED = "evaluated"
    RETRIED = "retried"
    CANCEL_REQUESTED = "cancel_requested"
    CANCELLED = "cancelled"
    FAILED = "failed"
    SUCCEEDED = "succeeded"


def record_event(
    session: Session,
    job_id: str,
    type_: EventType,
    *,
    attempt: int | None = None,
    **data: Any,
) -> JobEvent:
    event = JobEvent(job_id=job_id, type=type_.value, attempt=attempt, data=data)
    session.add(event)
    return event


def list_events(
    session: Session, job_id: str, *, after: int | None, limit: int
) -> tuple[list[JobEvent], bool]:
    """The job's events after event id `after`, oldest first. Returns (page, has_more)."""
    stmt = select(JobEvent).where(JobEvent.job_id == job_id)
    if after is not None:
        stmt = stmt.where(JobEvent.id > after)
    rows = list(session.scalars(stmt.order_by(JobEvent.id).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def encode_cursor(event_id: int) -> str:
    return f"ev_{event_id}"


def decode_cursor(cursor: str) -> int:
    if cursor.startswith("ev_") and cursor[3:].isdigit():
        return int(cursor[3:])
    raise ValidationFailed(
        "cursor: not a cursor returned by GET /jobs/{id}/events", {"field": "cursor"}
    )
