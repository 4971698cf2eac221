"""Worker heartbeats: each Celery worker process keeps one row up to date while it runs; the API
counts the rows seen recently (/health, /metrics) and prunes the ones long gone.

A worker that dies without a clean shutdown leaves its row behind: it stops counting once its
`last_seen_at` is older than ALIVE_HEARTBEATS heartbeats, and is deleted after STALE_AFTER.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.workers.models import WorkerHeartbeat

# A worker counts as alive when it was seen within this many heartbeat intervals.
ALIVE_HEARTBEATS = 3
# Rows of workers not seen for this long are deleted by the API's maintenance loop.
STALE_AFTER = timedelta(days=1)


def beat(session: Session, node: str, queue: str, concurrency: int) -> None:
    """Insert or refresh the row of worker `node` (last_seen_at = now)."""
    now = utcnow()
    values = {
        "node": node,
        "queue": queue,
        "concurrency": concurrency,
        "started_at": now,
        "last_seen_at": now,
    }
    refreshed = {"queue": queue, "concurrency": concurrency, "last_seen_at": now}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        pg = postgresql.insert(WorkerHeartbeat).values(values)
        session.execute(pg.on_conflict_do_update(index_elements=["node"], set_=refreshed))
    elif dialect == "sqlite":
        lite = sqlite.insert(WorkerHeartbeat).values(values)
        session.execute(lite.on_conflict_do_update(index_elements=["node"], set_=refreshed))
    else:  # pragma: no cover - the service runs on PostgreSQL or SQLite
        row = session.get(WorkerHeartbeat, node)
        if row is None:
            session.add(WorkerHeartbeat(**values))
        else:
            for name, value in refreshed.items():
                setattr(row, name, value)


def remove(session: Session, node: str) -> None:
    """Delete the row of worker `node` (it is shutting down)."""
    session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.node == node))


def alive_since(heartbeat_s: float, now: datetime | None = None) -> datetime:
    """The oldest last_seen_at of a worker that still counts as alive."""
    return (now or utcnow()) - timedelta(seconds=ALIVE_HEARTBEATS * heartbeat_s)


def alive_by_queue(session: Session, heartbeat_s: float) -> dict[str, int]:
    """Queue name -> how many workers taking jobs from it were seen within the alive window."""
    rows = session.execute(
        select(WorkerHeartbeat.queue, func.count())
        .where(WorkerHeartbeat.last_seen_at >= alive_since(heartbeat_s))
        .group_by(WorkerHeartbeat.queue)
    )
    return {str(queue): int(count) for queue, count in rows}


def prune(session: Session, older_than: timedelta = STALE_AFTER) -> int:
    """Delete the rows of workers not seen for `older_than`; how many went."""
    result = session.execute(
        delete(WorkerHeartbeat).where(WorkerHeartbeat.last_seen_at < utcnow() - older_than)
    )
    return int(getattr(result, "rowcount", 0) or 0)
