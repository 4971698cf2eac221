"""Where queued jobs wait: each one's queue, its place there, and the live workers taking that
queue (from their heartbeats). A fixed number of queries for any number of jobs, so a page of
GET /jobs costs the same as one job."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, bindparam, func, select
from sqlalchemy.orm import Session

from app.jobs.models import Job
from app.jobs.schemas import JobQueue
from app.jobs.states import JobStatus
from app.routing import Resources
from app.workers import service as workers


def _queue_of(default: str) -> ColumnElement[str]:
    """A job's queue, in SQL; jobs from before routing (None) wait in `default`."""
    return func.coalesce(Job.queue, default)


def queued_by_queue(session: Session, default: str) -> dict[str, int]:
    """Queue -> how many jobs wait in it (only queues with waiting jobs)."""
    name = _queue_of(default)
    rows = session.execute(
        select(name, func.count()).where(Job.status == JobStatus.QUEUED.value).group_by(name)
    )
    return {str(queue): int(count) for queue, count in rows}


@functools.lru_cache(maxsize=8)
def _placed(default: str) -> Select[tuple[str, str, int]]:
    """The place of the queued jobs with the ids bound as `ids`, built once per default queue
    (SQLAlchemy memoizes a statement's cache key on the object, so polls do not rebuild it)."""
    name = _queue_of(default)
    ranked = (
        select(
            Job.id.label("id"),
            name.label("queue"),
            func.row_number()
            .over(partition_by=name, order_by=(Job.created_at, Job.id))
            .label("position"),
        )
        .where(Job.status == JobStatus.QUEUED.value)
        .subquery()
    )
    return select(ranked.c.id, ranked.c.queue, ranked.c.position).where(
        ranked.c.id.in_(bindparam("ids", expanding=True))
    )


def places(
    session: Session, jobs: Sequence[Job | Row[Any]], *, default: str, heartbeat_s: float
) -> dict[str, JobQueue]:
    """Job id -> where it waits, for the queued ones among `jobs`. Position: the queued jobs of
    the same queue created before it (ties broken by id), plus 1; every team's jobs count, as
    they all wait for the same workers."""
    queued = [job.id for job in jobs if job.status == JobStatus.QUEUED.value]
    if not queued:
        return {}
    rows = session.execute(_placed(default), {"ids": queued}).all()
    live = workers.alive_by_queue(session, heartbeat_s)
    by_id = {job.id: job for job in jobs}
    out: dict[str, JobQueue] = {}
    for row in rows:
        count = live.get(row.queue, 0)
        message = None
        if count == 0:
            wanted = Resources.of(by_id[row.id].resources).describe()
            message = f"no live worker serves {wanted}; the job waits until one starts"
        out[row.id] = JobQueue(
            name=row.queue, position=int(row.position), workers=count, message=message
        )
    return out
