"""A job's timeline: typed events, written in the same transaction as what they describe."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import ValidationFailed
from app.jobs.models import JobEvent
from app.webhooks.outbox import enqueue_event


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
    """Add an event to job `job_id`'s timeline, and (same transaction: the outbox) a delivery
    for each of the job's team's webhook endpoints subscribed to it."""
    event = JobEvent(job_id=job_id, type=type_.value, attempt=attempt, data=data)
    session.add(event)
    enqueue_event(session, event)
    return event


def list_events(
    session: Session, job_id: str, *, after: int, limit: int
) -> tuple[list[tuple[int, JobEvent]], bool]:
    """The job's events after the first `after` ones, oldest first, each with its position in
    the job's timeline (1, 2, 3, ...). Returns (page, has_more).

    Clients see positions, never the table's ids: those count across every team's jobs, so
    their gaps would tell how busy other teams are.
    """
    stmt = select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
    rows = list(session.scalars(stmt.offset(after).limit(limit + 1)))
    page = [(after + i + 1, event) for i, event in enumerate(rows[:limit])]
    return page, len(rows) > limit


_CURSOR = re.compile(r"ev_([0-9]{1,9})")


def encode_cursor(position: int) -> str:
    return f"ev_{position}"


def decode_cursor(cursor: str) -> int:
    """The position a cursor of GET /jobs/{id}/events stands for; 422 invalid_cursor for
    anything that is not exactly one."""
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        raise ValidationFailed(
            "cursor: not a cursor returned by GET /jobs/{id}/events",
            {"field": "cursor"},
            code="invalid_cursor",
        )
    return int(match.group(1))
