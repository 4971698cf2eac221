from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, JSONType, UTCDateTime, utcnow


class WorkerHeartbeat(Base):
    """A live worker process (a Celery node), as it last said: which queue it takes jobs from,
    how many at once, and when it last beat. /health counts the ones seen recently."""

    __tablename__ = "worker_heartbeats"

    # The Celery node name (`embedtune-<pid>@<host>`): unique per worker process.
    node: Mapped[str] = mapped_column(String(255), primary_key=True)
    queue: Mapped[str] = mapped_column(String(255), index=True)
    concurrency: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # What the worker has: its GPU type (None: unset) and device count, and every queue it
    # consumes (app.routing).
    gpu_type: Mapped[str | None] = mapped_column(String(64))
    gpus: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    queues: Mapped[list[Any] | None] = mapped_column(JSONType)
