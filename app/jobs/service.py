"""Job use cases: create, read, list. Services never commit; the caller's unit of work does."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from app.datasets.models import Dataset
from app.errors import Conflict, NotFound, ValidationFailed
from app.ids import new_id
from app.jobs.models import Job
from app.jobs.schemas import DatasetRef, HubDatasetRef, JobCreate, JobRead
from app.jobs.states import JobStatus


def _check_dataset(session: Session, field: str, ref: DatasetRef | None, triplets: bool) -> None:
    if ref is None or isinstance(ref, HubDatasetRef):
        return
    dataset = session.get(Dataset, ref)
    if dataset is None:
        raise ValidationFailed(
            f"{field}: dataset '{ref}' does not exist; upload it with POST /datasets first",
            {"field": field, "dataset": ref},
            code="dataset_not_found",
        )
    if triplets and dataset.kind != "triplet":
        raise ValidationFailed(
            f"{field}: dataset '{ref}' has {dataset.kind}s, but evaluation needs triplets "
            "(columns anchor, positive, negative)",
            {"field": field, "dataset": ref, "kind": dataset.kind},
            code="dataset_kind_invalid",
        )


def _ref_json(ref: DatasetRef | None) -> Any:
    if isinstance(ref, HubDatasetRef):
        return ref.model_dump()
    return ref


def create_job(session: Session, payload: JobCreate) -> Job:
    """Validate the referenced datasets and add a queued job. Raises ValidationFailed (422)."""
    _check_dataset(session, "train_dataset", payload.train_dataset, triplets=False)
    _check_dataset(session, "eval_dataset", payload.eval_dataset, triplets=True)
    _check_dataset(session, "test_dataset", payload.test_dataset, triplets=True)
    job = Job(
        id=new_id("job"),
        name=payload.name,
        status=JobStatus.QUEUED.value,
        base_model=payload.base_model,
        train_dataset=_ref_json(payload.train_dataset),
        eval_dataset=_ref_json(payload.eval_dataset),
        test_dataset=_ref_json(payload.test_dataset),
        loss=payload.loss,
        hyperparameters=payload.hyperparameters.model_dump(),
        metadata_=dict(payload.metadata),
        attempt=0,
    )
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job '{job_id}' does not exist", {"job": job_id})
    return job


def succeeded_job(session: Session, job_id: str) -> Job:
    """The job, if its model can be downloaded. 404 unknown, 409 not (yet) succeeded."""
    job = get_job(session, job_id)
    if job.status != JobStatus.SUCCEEDED.value:
        raise Conflict(
            f"job '{job_id}' is {job.status}; its model can be downloaded once it has succeeded",
            {"job": job_id, "status": job.status},
            code="model_not_ready",
        )
    return job


def _encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, job_id = raw.split("|", 1)
        return datetime.fromisoformat(created), job_id
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise ValidationFailed(
            "cursor: not a cursor returned by GET /jobs", {"field": "cursor"}
        ) from exc


def list_jobs(
    session: Session, *, status: JobStatus | None, limit: int, cursor: str | None
) -> tuple[list[Job], bool, str | None]:
    """Newest first. Returns (page, has_more, next_cursor)."""
    stmt = select(Job)
    if status is not None:
        stmt = stmt.where(Job.status == status.value)
    if cursor:
        created, job_id = _decode_cursor(cursor)
        stmt = stmt.where(
            or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id))
        )
    stmt = stmt.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    rows = list(session.scalars(stmt))
    has_more = len(rows) > limit
    page = rows[:limit]
    return page, has_more, (_encode_cursor(page[-1]) if has_more and page else None)


def to_read(job: Job) -> JobRead:
    error = {"code": job.error_code, "message": job.error_message or ""} if job.error_code else None
    model = None
    if job.status == JobStatus.SUCCEEDED.value and job.model_sha256:
        model = {
            "url": f"/jobs/{job.id}/model",
            "size_bytes": job.model_size_bytes,
            "sha256": job.model_sha256,
        }
    return JobRead.model_validate(
        {
            "id": job.id,
            "status": job.status,
            "name": job.name,
            "base_model": job.base_model,
            "train_dataset": job.train_dataset,
            "eval_dataset": job.eval_dataset,
            "test_dataset": job.test_dataset,
            "loss": job.loss,
            "hyperparameters": job.hyperparameters,
            "metadata": job.metadata_ or {},
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "progress": job.progress,
            "metrics": job.metrics,
            "error": error,
            "model": model,
        }
    )
