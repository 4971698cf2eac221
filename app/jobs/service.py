"""Job use cases: create, read, list. Services never commit; the caller's unit of work does."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, and_, bindparam, func, or_, select
from sqlalchemy.orm import Session

from app import cursors
from app.datasets.errors import DatasetFormatError
from app.datasets.models import Dataset
from app.datasets.roles import hub_layout
from app.errors import Conflict, NotFound, ValidationFailed
from app.ids import new_id
from app.jobs.base_models import check_base_model
from app.jobs.events import EventType, record_event
from app.jobs.models import Job, JobMetricPoint
from app.jobs.preflight import HUB_SKIPPED, StoredData, has_errors, job_preflight
from app.jobs.schemas import (
    STORED,
    DatasetRef,
    HubDatasetRef,
    JobCreate,
    JobMetricsSeries,
    JobQueue,
    JobRead,
)
from app.jobs.states import JobStatus, shown_phase
from app.jobs.waiting import places
from app.limits import Limits, check_active_jobs, check_hyperparameters, limits_for
from app.routing import Resources, queue_for
from app.settings import Settings
from app.storage import ObjectMissing, get_store
from app.storage.scratch import local_copy
from rules.devices import BatchSizeNotDivisible, per_device_batch_size

_TRIPLETS_NEEDED = "evaluation needs triplets (columns anchor, positive, negative)"
# What each dataset field accepts (None: any kind but "sts"), and why, for the message.
_KINDS: dict[str, tuple[frozenset[str] | None, str]] = {
    "train_dataset": (None, "STS pairs with scores cannot be trained on with MNR"),
    "eval_dataset": (frozenset({"triplet"}), _TRIPLETS_NEEDED),
    "test_dataset": (frozenset({"triplet"}), _TRIPLETS_NEEDED),
    "sts_dataset": (
        frozenset({"sts"}),
        "sts_dataset needs STS pairs (columns sentence1, sentence2, score)",
    ),
}


# The shapes a Hub column mapping may describe, per field.
_HUB_SHAPES: dict[str, frozenset[str]] = {
    "train_dataset": frozenset({"triplet", "pair"}),
    "eval_dataset": frozenset({"triplet"}),
    "test_dataset": frozenset({"triplet"}),
    "sts_dataset": frozenset({"sts"}),
}


def _check_hub_columns(field: str, ref: HubDatasetRef) -> None:
    """A Hub reference's column mapping must describe a shape the field can use."""
    if not ref.columns:
        return
    where = f"{field}.columns"
    try:
        layout = hub_layout(ref.columns)
    except DatasetFormatError as exc:
        raise ValidationFailed(
            f"{where}: {exc.message}", {"field": where, **exc.details}, code="validation_error"
        ) from exc
    needs = _KINDS[field][1]
    usable = layout.shape in _HUB_SHAPES[field] and (
        field not in {"eval_dataset", "test_dataset"} or layout.negatives == 1
    )
    if not usable:
        roles = ", ".join(role for role, _ in layout.roles)
        raise ValidationFailed(
            f"{where}: the mapping gives roles {roles}, but {needs}",
            {"field": where, "roles": [role for role, _ in layout.roles]},
            code="dataset_kind_invalid",
        )


def _check_dataset(
    session: Session, field: str, ref: DatasetRef | None, team_id: str
) -> Dataset | None:
    """The uploaded dataset ``ref`` names, checked for ``field``; None for none or a Hub ref.
    Another team's dataset is refused exactly like an unknown one."""
    if ref is None:
        return None
    if isinstance(ref, HubDatasetRef):
        _check_hub_columns(field, ref)
        return None
    # A share lock until the job is committed: a concurrent DELETE /datasets (which locks the
    # row for update) either waits and then sees this job as a user, or wins and this
    # request finds no dataset.
    dataset = session.scalars(
        select(Dataset).where(Dataset.id == ref).with_for_update(read=True)
    ).one_or_none()
    if dataset is None or dataset.team_id != team_id:
        raise ValidationFailed(
            f"{field}: dataset '{ref}' does not exist; upload it with POST /datasets first",
            {"field": field, "dataset": ref},
            code="dataset_not_found",
        )
    kinds, needs = _KINDS[field]
    refused = dataset.kind == "sts" if kinds is None else dataset.kind not in kinds
    if refused:
        raise ValidationFailed(
            f"{field}: dataset '{ref}' has {dataset.kind}s, but {needs}",
            {"field": field, "dataset": ref, "kind": dataset.kind},
            code="dataset_kind_invalid",
        )
    negatives = len(dataset.text_columns) - 2
    if field in {"eval_dataset", "test_dataset"} and negatives != 1:
        # TripletEvaluator scores one negative per anchor.
        raise ValidationFailed(
            f"{field}: dataset '{ref}' has {negatives} negatives per row, but evaluation "
            "scores exactly one (columns anchor, positive, negative); upload it with one "
            "negative column for evaluation",
            {"field": field, "dataset": ref, "negatives": negatives},
            code="dataset_kind_invalid",
        )
    return dataset


def _ref_json(ref: DatasetRef | None) -> Any:
    if isinstance(ref, HubDatasetRef):
        return ref.model_dump()
    return ref


def _stored(settings: Settings, field: str, dataset: Dataset | None) -> StoredData | None:
    if dataset is None:
        return None
    try:
        # The API's cached copy when it has one (it keeps what it stored); else a download.
        path = local_copy(get_store(), dataset.storage_key, settings)
    except ObjectMissing as exc:
        # Lost from the store: the job could not run.
        raise ValidationFailed(
            f"{field}: the file of dataset '{dataset.id}' is missing from storage; upload it again",
            {"field": field, "dataset": dataset.id},
            code="dataset_unavailable",
        ) from exc
    return StoredData(
        path=path,
        format=(dataset.stored_format or dataset.format),  # type: ignore[arg-type]
        text_columns=tuple(dataset.text_columns),
        rows=dataset.rows,
    )


def _shared_positive_rows(dataset: Dataset | None) -> int | None:
    """The duplicate_positives count of the dataset's upload-time preflight (None: unknown)."""
    if dataset is None or dataset.preflight is None:
        return None
    for finding in dataset.preflight.get("findings", []):
        if finding.get("code") == "duplicate_positives":
            return int(finding.get("count", 0))
    return 0


def _preflight(
    settings: Settings, payload: JobCreate, datasets: dict[str, Dataset | None]
) -> dict[str, Any]:
    """The job-time preflight report; 422 preflight_failed when it has an error."""
    refs = {
        "train_dataset": payload.train_dataset,
        "eval_dataset": payload.eval_dataset,
        "test_dataset": payload.test_dataset,
    }
    skipped = [
        {"field": field, "reason": HUB_SKIPPED}
        for field, ref in refs.items()
        if isinstance(ref, HubDatasetRef)
    ]
    report = job_preflight(
        train=_stored(settings, "train_dataset", datasets["train_dataset"]),
        eval=_stored(settings, "eval_dataset", datasets["eval_dataset"]),
        test=_stored(settings, "test_dataset", datasets["test_dataset"]),
        has_eval=payload.eval_dataset is not None,
        hyperparameters=payload.hyperparameters.model_dump(),
        shared_positive_rows=_shared_positive_rows(datasets["train_dataset"]),
        skipped=skipped,
        base_model=payload.base_model,
        model_dirs=settings.model_dirs,
    )
    if has_errors(report):
        errors = [f for f in report["findings"] if f["severity"] == "error"]
        raise ValidationFailed(
            "preflight: " + " ".join(f["message"] for f in errors),
            report,
            code="preflight_failed",
        )
    return report


def _resources(settings: Settings, payload: JobCreate) -> Resources:
    """The job's resources, checked against this server's GPU types and device cap (422 naming
    the field); the schema has checked their shape."""
    asked = payload.resources
    if asked is None:
        return Resources()
    allowed = settings.gpu_types
    if asked.gpu_type is not None and asked.gpu_type not in allowed:
        why = (
            f"one of {', '.join(allowed)}"
            if allowed
            else "this server names no GPU types (EMBEDTUNE_GPU_TYPES is empty): leave "
            "gpu_type out to run on any worker"
        )
        raise ValidationFailed(
            f"resources.gpu_type: '{asked.gpu_type}' is not a GPU type of this server; {why}",
            {"field": "resources.gpu_type", "allowed": list(allowed)},
        )
    if asked.gpus > settings.max_gpus_per_job:
        raise ValidationFailed(
            f"resources.gpus: at most {settings.max_gpus_per_job} on this server, got {asked.gpus}",
            {"field": "resources.gpus", "max": settings.max_gpus_per_job},
        )
    try:
        # The worker splits the global batch with the same rule.
        per_device_batch_size(payload.hyperparameters.batch_size, asked.gpus)
    except BatchSizeNotDivisible as exc:
        raise ValidationFailed(
            f"hyperparameters.batch_size: {exc.message}",
            {"field": "hyperparameters.batch_size", "gpus": asked.gpus},
            code=exc.code,
        ) from exc
    return Resources(gpu_type=asked.gpu_type, gpus=asked.gpus)


def count_active_jobs(session: Session, team_id: str) -> int:
    """Queued + running jobs of team `team_id` (what EMBEDTUNE_MAX_ACTIVE_JOBS bounds)."""
    active = [JobStatus.QUEUED.value, JobStatus.RUNNING.value]
    query = select(func.count()).select_from(Job).where(Job.status.in_(active))
    return session.scalar(query.where(Job.team_id == team_id)) or 0


def create_job(
    session: Session,
    payload: JobCreate,
    settings: Settings,
    *,
    team_id: str,
    limits: Limits | None = None,
) -> Job:
    """Validate the referenced datasets (team `team_id`'s own), run the job preflight on the
    uploaded ones and add a queued job of that team. Raises ValidationFailed (422), code
    preflight_failed when the preflight finds an error (its report in the details), 422
    limit_exceeded for hyperparameters over the team's `limits` (default: the settings'), 422
    model_not_found for a base model the API can tell does not exist (app.jobs.base_models),
    and 429 too_many_active_jobs when the team already has its most queued + running jobs.
    The job waits in the queue of its resources (app.routing); 422 validation_error naming
    resources.gpu_type or resources.gpus for hardware this server does not offer."""
    resources = _resources(settings, payload)
    datasets = {
        field: _check_dataset(session, field, getattr(payload, field), team_id)
        for field in ("train_dataset", "eval_dataset", "test_dataset", "sts_dataset")
    }
    limit = payload.hyperparameters.time_limit_s
    if limit is not None and limit > settings.max_time_limit_s:
        raise ValidationFailed(
            f"hyperparameters.time_limit_s: at most {settings.max_time_limit_s} seconds on this "
            f"server, got {limit}",
            {"field": "hyperparameters.time_limit_s", "max": settings.max_time_limit_s},
        )
    limits = limits or limits_for(settings)
    hyperparameters = payload.hyperparameters
    check_hyperparameters(limits, hyperparameters.model_dump(), hyperparameters.model_fields_set)
    check_active_jobs(limits, count_active_jobs(session, team_id))
    check_base_model(payload.base_model, settings.model_dirs)
    report = _preflight(settings, payload, datasets)
    job = Job(
        id=new_id("job"),
        team_id=team_id,
        name=payload.name,
        status=JobStatus.QUEUED.value,
        base_model=payload.base_model,
        train_dataset=_ref_json(payload.train_dataset),
        eval_dataset=_ref_json(payload.eval_dataset),
        test_dataset=_ref_json(payload.test_dataset),
        sts_dataset=_ref_json(payload.sts_dataset),
        loss=payload.loss,
        hyperparameters=payload.hyperparameters.model_dump(),
        metadata_=dict(payload.metadata),
        card_examples=payload.card_examples,
        preflight=report,
        attempt=0,
        resources=resources.as_json(),
        # The full name, even for the default queue: a job stays in the queue it was sent to
        # whatever EMBEDTUNE_QUEUE the process that re-sends it has.
        queue=queue_for(resources, settings.queue),
    )
    session.add(job)
    session.flush()
    record_event(session, job.id, EventType.QUEUED, attempt=0)
    return job


# What a job's answer needs, read as plain rows: building ORM objects (identity map, state
# tracking) cost more than the columns themselves on a polled page of 20 (bench/README.md).
_SHOWN = (
    Job.id,
    Job.team_id,
    Job.status,
    Job.name,
    Job.base_model,
    Job.train_dataset,
    Job.eval_dataset,
    Job.test_dataset,
    Job.sts_dataset,
    Job.holdout,
    Job.preflight,
    Job.loss,
    Job.hyperparameters,
    Job.metadata_.label("metadata_"),
    Job.card_examples,
    Job.created_at,
    Job.started_at,
    Job.finished_at,
    Job.progress,
    Job.metrics,
    Job.error_code,
    Job.error_message,
    Job.model_sha256,
    Job.model_size_bytes,
    Job.attempt,
    Job.cancel_requested_at,
    Job.checkpoint_step,
    Job.hub_revisions,
    Job.resources,
    Job.phase,
    Job.timings,
)
# A job as read for its answer: the ORM object, or a row of _SHOWN (the same attribute names).
ShownJob = Job | Row[Any]


# Built once: SQLAlchemy memoizes a statement's cache key on the object, so a polled read does
# not rebuild the expression and its key every time (~7% of a GET /jobs/{id}'s CPU).
_SHOWN_ONE = select(*_SHOWN).where(
    Job.id == bindparam("job_id"), Job.team_id == bindparam("team_id")
)


def shown_job(session: Session, job_id: str, *, team_id: str) -> Row[Any]:
    """Team `team_id`'s job, as a row of what its answer needs; 404 as get_job."""
    row = session.execute(_SHOWN_ONE, {"job_id": job_id, "team_id": team_id}).one_or_none()
    if row is None:
        raise NotFound(f"job '{job_id}' does not exist", {"job": job_id})
    return row


def get_job(session: Session, job_id: str, *, team_id: str) -> Job:
    """Team `team_id`'s job; 404 when unknown or another team's (the same answer: no
    existence leak)."""
    job = session.get(Job, job_id)
    if job is None or job.team_id != team_id:
        raise NotFound(f"job '{job_id}' does not exist", {"job": job_id})
    return job


def succeeded_job(session: Session, job_id: str, *, team_id: str) -> Job:
    """The job, if its model can be downloaded. 404 unknown (or another team's), 409 not
    (yet) succeeded."""
    job = get_job(session, job_id, team_id=team_id)
    if job.status != JobStatus.SUCCEEDED.value:
        raise Conflict(
            f"job '{job_id}' is {job.status}; its model can be downloaded once it has succeeded",
            {"job": job_id, "status": job.status},
            code="model_not_ready",
        )
    return job


_JOB_ID = re.compile(r"job_[0-9a-f]{24}")


def list_jobs(
    session: Session, *, team_id: str, status: JobStatus | None, limit: int, cursor: str | None
) -> tuple[list[Row[Any]], bool, str | None]:
    """Team `team_id`'s jobs, newest first, as rows of what their answers need. Returns
    (page, has_more, next_cursor)."""
    stmt = select(*_SHOWN).where(Job.team_id == team_id)
    if status is not None:
        stmt = stmt.where(Job.status == status.value)
    if cursor:
        created, job_id = cursors.decode(cursor, _JOB_ID, "GET /jobs")
        stmt = stmt.where(
            or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id))
        )
    stmt = stmt.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    rows = list(session.execute(stmt))
    has_more = len(rows) > limit
    page = rows[:limit]
    next_cursor = cursors.encode(page[-1].created_at, page[-1].id) if has_more and page else None
    return page, has_more, next_cursor


def read_jobs(session: Session, settings: Settings, jobs: Sequence[ShownJob]) -> list[JobRead]:
    """`jobs` as clients see them, the queued ones with their queue and place there."""
    waiting = places(session, jobs, default=settings.queue, heartbeat_s=settings.worker_heartbeat_s)
    return [to_read(job, waiting.get(job.id)) for job in jobs]


def to_read(job: ShownJob, queue: JobQueue | None = None) -> JobRead:
    """Job `job` as clients see it; `queue`: where it waits, when it is queued (read_jobs)."""
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
            "sts_dataset": job.sts_dataset,
            "holdout": job.holdout,
            "preflight": job.preflight,
            "loss": job.loss,
            "hyperparameters": job.hyperparameters,
            "metadata": job.metadata_ or {},
            "card_examples": bool(job.card_examples),
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "progress": job.progress,
            "metrics": job.metrics,
            "error": error,
            "model": model,
            "attempt": job.attempt,
            "cancel_requested_at": job.cancel_requested_at,
            "checkpoint_step": job.checkpoint_step,
            "hub_revisions": job.hub_revisions,
            "resources": Resources.of(job.resources).as_json(),
            "queue": queue,
            "phase": shown_phase(job.status, job.phase),
            "timings": job.timings,
            "throughput": (job.timings or {}).get("throughput"),
        },
        # Stored references are shown as stored, including any from before the name rules.
        context={STORED: True},
    )


_TRAIN_KEYS = ("loss", "learning_rate", "grad_norm")
_EVAL_KEYS = (
    "loss",
    "cosine_accuracy",
    "dot_accuracy",
    "euclidean_accuracy",
    "manhattan_accuracy",
    "max_accuracy",
)
_FINAL_KEYS = (*_EVAL_KEYS[1:], "sts_spearman_cosine", "sts_pearson_cosine")


def _difference(base: dict[str, Any], fine_tuned: dict[str, Any]) -> dict[str, float | None]:
    """fine_tuned - base per metric; None where either is missing."""
    out: dict[str, float | None] = {}
    for key in _FINAL_KEYS:
        b, f = base.get(key), fine_tuned.get(key)
        if isinstance(b, int | float) and isinstance(f, int | float):
            out[key] = float(f) - float(b)
        else:
            out[key] = None
    return out


def job_metrics(session: Session, job_id: str, *, team_id: str) -> JobMetricsSeries:
    """The job's time series so far and its final metrics (404 for an unknown job or
    another team's)."""
    job = get_job(session, job_id, team_id=team_id)
    rows = session.scalars(
        select(JobMetricPoint)
        .where(JobMetricPoint.job_id == job.id)
        .order_by(JobMetricPoint.kind, JobMetricPoint.step)
    )
    train: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    for row in rows:
        values = row.values or {}
        if row.kind == "train":
            train.append({"step": row.step, "epoch": row.epoch, **_pick(values, _TRAIN_KEYS)})
        elif row.kind == "eval":
            evals.append({"step": row.step, "epoch": row.epoch, **_pick(values, _EVAL_KEYS)})
    final = None
    metrics = job.metrics
    if metrics and metrics.get("base") and metrics.get("fine_tuned"):
        final = {
            "base": metrics["base"],
            "fine_tuned": metrics["fine_tuned"],
            "difference": _difference(metrics["base"], metrics["fine_tuned"]),
            "evaluated_on": metrics.get("evaluated_on"),
        }
    return JobMetricsSeries.model_validate(
        {
            "job_id": job.id,
            "status": job.status,
            "total_steps": (job.progress or {}).get("total_steps"),
            "train": train,
            "eval": evals,
            "final": final,
        }
    )


def _pick(values: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: values.get(key) for key in keys}
