from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.auth import models as _auth  # noqa: F401  (teams: the table team_id refers to)
from app.db.base import Base, JSONType, UTCDateTime, utcnow


class Job(Base):
    """A fine-tuning job. This row, not the broker message, is the record of the job."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_created_at", "status", "created_at"),
        Index("ix_jobs_status_lease_expires_at", "status", "lease_expires_at"),
        Index("ix_jobs_team_id_created_at", "team_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # The owning team: only its keys see the job, its events, metrics and model.
    team_id: Mapped[str] = mapped_column(String(40), ForeignKey("teams.id"))
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
    # The running attempt holds the job until this time and renews it by heartbeat; past it,
    # the sweeper takes the job back (app.jobs.leases).
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Requests the running attempt reads at its heartbeat and acts on at its next step.
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    handback_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Step of the latest checkpoint on disk, which a later attempt resumes from.
    checkpoint_step: Mapped[int | None] = mapped_column(Integer)
    # Attempts that ended with their lease expiring (a worker died); limited by max_attempts.
    workers_lost: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Role -> the Hub commit each Hub dataset of the job resolved to, once it ran.
    hub_revisions: Mapped[dict[str, str] | None] = mapped_column(JSONType)
    # Running time summed over attempts, what the job's time limit is checked against.
    running_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # Whether the model card may quote training/eval rows (off: sizes and statistics only).
    card_examples: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The store key of the job's model (an attempt-scoped key), set only by the fenced
    # transaction that marks the job succeeded; None for jobs older than 0010.
    model_key: Mapped[str | None] = mapped_column(String(500))
    # What the job asked for: {"gpu_type": str | None, "gpus": int}; None: any type, one device.
    resources: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The Celery queue the job is sent to (app.routing); None: the default queue.
    queue: Mapped[str | None] = mapped_column(String(255))
    # What the job is doing (rules.phases.Phase), or its terminal status once it ended; None
    # for jobs older than 0011 (the API derives one from the status).
    phase: Mapped[str | None] = mapped_column(String(20), default="queued")
    # Where the time of the attempt that succeeded went: rules.phases.TIMING_KEYS in seconds
    # and "throughput" (training samples per second); None until the job succeeded.
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


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


class JobEvent(Base):
    """One entry of a job's timeline (GET /jobs/{id}/events); ids order the timeline."""

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job_id_id", "job_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(40), ForeignKey("jobs.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    attempt: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
