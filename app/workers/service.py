"""Worker heartbeats: each Celery worker process keeps one row up to date while it runs; the API
counts the rows seen recently (/health, /metrics) and prunes the ones long gone.

A worker that dies without a clean shutdown leaves its row behind: it stops counting once its
`last_seen_at` is older than ALIVE_HEARTBEATS heartbeats, and is deleted after STALE_AFTER.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.workers.models import WorkerHeartbeat

# A worker counts as alive when it was seen within this many heartbeat intervals.
ALIVE_HEARTBEATS = 3
# Rows of workers not seen for this long are deleted by the API's maintenance loop.
STALE_AFTER = timedelta(days=1)


def beat(
    session: Session,
    node: str,
    queue: str,
    concurrency: int,
    *,
    gpu_type: str | None = None,
    gpus: int = 1,
    queues: Sequence[str] | None = None,
) -> None:
    """Insert or refresh the row of worker `node` (last_seen_at = now): its deployment queue
    `queue`, and what it has and consumes (`queues`, default just `queue`; app.routing)."""
    now = utcnow()
    refreshed = {
        "queue": queue,
        "concurrency": concurrency,
        "gpu_type": gpu_type,
        "gpus": gpus,
        "queues": list(queues) if queues is not None else [queue],
        "last_seen_at": now,
    }
    values = {"node": node, "started_at": now, **refreshed}
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


@dataclass(frozen=True)
class LiveWorker:
    node: str
    gpu_type: str | None
    gpus: int
    queues: tuple[str, ...]


def alive(session: Session, heartbeat_s: float) -> list[LiveWorker]:
    """The workers seen within the alive window, with what they have and consume."""
    rows = session.execute(
        select(
            WorkerHeartbeat.node,
            WorkerHeartbeat.queue,
            WorkerHeartbeat.gpu_type,
            WorkerHeartbeat.gpus,
            WorkerHeartbeat.queues,
        ).where(WorkerHeartbeat.last_seen_at >= alive_since(heartbeat_s))
    )
    return [
        LiveWorker(
            node=row.node,
            gpu_type=row.gpu_type,
            gpus=int(row.gpus or 1),
            # Rows of workers from before routing name only their one queue.
            queues=tuple(str(q) for q in (row.queues or [row.queue])),
        )
        for row in rows
    ]


def by_queue(live: Sequence[LiveWorker]) -> dict[str, int]:
    """Queue name -> how many of the `live` workers take jobs from it."""
    counts: Counter[str] = Counter()
    for worker in live:
        counts.update(set(worker.queues))
    return dict(counts)


def alive_by_queue(session: Session, heartbeat_s: float) -> dict[str, int]:
    """Queue name -> how many workers taking jobs from it were seen within the alive window. A
    worker counts in every queue it consumes (app.routing)."""
    return by_queue(alive(session, heartbeat_s))


def prune(session: Session, older_than: timedelta = STALE_AFTER) -> int:
    """Delete the rows of workers not seen for `older_than`; how many went."""
    result = session.execute(
        delete(WorkerHeartbeat).where(WorkerHeartbeat.last_seen_at < utcnow() - older_than)
    )
    return int(getattr(result, "rowcount", 0) or 0)
