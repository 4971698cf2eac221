"""Deleting a dataset: its row now (refused while a queued or running job uses it), its object
and this process's copy once the row is gone for good.

The row goes first, in the request's transaction; the object after the commit. A store that
fails then leaves an object no row names: harmless garbage (ids are never reused) that a
sweep of the store can remove later, logged here. The other way round, a failed commit would
leave a row whose file is gone.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.datasets.models import Dataset
from app.datasets.service import get_dataset
from app.errors import Conflict
from app.jobs.models import Job
from app.jobs.states import JobStatus
from app.settings import Settings
from app.storage import StorageError, get_store
from app.storage.scratch import forget_local_copy

log = logging.getLogger(__name__)

# The job fields that may name an uploaded dataset (a dataset id string; a Hub reference is a
# JSON object).
_DATASET_FIELDS = ("train_dataset", "eval_dataset", "test_dataset", "sts_dataset")
_ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def jobs_using(session: Session, dataset_id: str, *, team_id: str) -> list[str]:
    """Ids of team `team_id`'s queued or running jobs that use dataset `dataset_id` in any
    role, oldest first. Only the team's own jobs can name its datasets, and its active jobs
    are few (EMBEDTUNE_MAX_ACTIVE_JOBS), so they are read and compared here rather than by a
    JSON query that differs between SQLite and PostgreSQL."""
    active = session.scalars(
        select(Job)
        .where(Job.team_id == team_id, Job.status.in_(_ACTIVE))
        .order_by(Job.created_at, Job.id)
    )
    return [
        job.id
        for job in active
        if any(getattr(job, name) == dataset_id for name in _DATASET_FIELDS)
    ]


def delete_dataset(session: Session, dataset_id: str, *, team_id: str) -> str:
    """Delete team `team_id`'s dataset row (not committed) and return its storage key, for
    `remove_dataset_object` after the commit. 404 when unknown or another team's; 409
    dataset_in_use naming the queued or running jobs that use it. Finished jobs that used it
    keep their record; their reference to it no longer resolves."""
    dataset = get_dataset(session, dataset_id, team_id=team_id)
    # Locked for update: a job being created with it (which holds a share lock until it is
    # committed) is either finished and seen below, or waits and then finds no dataset.
    session.execute(select(Dataset.id).where(Dataset.id == dataset.id).with_for_update())
    users = jobs_using(session, dataset.id, team_id=team_id)
    if users:
        raise Conflict(
            f"dataset '{dataset.id}' is used by queued or running job(s) {', '.join(users)}; "
            "cancel them or wait until they finish, then delete it",
            {"dataset": dataset.id, "jobs": users},
            code="dataset_in_use",
        )
    key = dataset.storage_key
    session.delete(dataset)
    session.flush()
    return key


def remove_dataset_object(settings: Settings, dataset_id: str, key: str) -> None:
    """Remove a deleted dataset's object and this process's cached copy. A store failure is
    logged, not raised: the row is gone, the object is garbage."""
    forget_local_copy(settings, key)
    try:
        get_store().delete(key)
    except StorageError as exc:
        log.warning(
            "dataset %s deleted, but its object %s stays in the store (%s); it is garbage "
            "that no row names",
            dataset_id,
            key,
            exc,
        )
