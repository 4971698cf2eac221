from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, JSONType, UTCDateTime, utcnow


class Job(Base):
    """A fine-tuning job. This row, not the broker message, is the record of the job."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_created_at", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    base_model: Mapped[str] = mapped_column(String(300))
    # As the client gave them: a dataset id (string) or a Hub reference (object).
    train_dataset: Mapped[Any] = mapped_column(JSONType)
    eval_dataset: Mapped[Any | None] = mapped_column(JSONType)
    test_dataset: Mapped[Any | None] = mapped_column(JSONType)
    sts_dataset: Mapped[Any | None] = mapped_column(JSONType)
    # Set when training rows were held out as the eval set: {"rows", "share", "seed"}.
    holdout: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The job-time preflight report (app.jobs.preflight), computed at creation; None before 0004.
    preflight: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    loss: Mapped[str] = mapped_column(String(32))
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # `metadata` is reserved on declarative classes, hence the attribute name.
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    model_size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    model_sha256: Mapped[str | None] = mapped_column(String(64))


class JobMetricPoint(Base):
    """One point of a job's training time series: a logged train loss or an evaluation."""

    __tablename__ = "job_metric_points"
    __table_args__ = (UniqueConstraint("job_id", "kind", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(40), ForeignKey("jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # "train" | "eval"
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[float] = mapped_column(Float)
    values: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
