"""Deleting a finished job: its row, timeline, metric points and webhook deliveries now; every
object under its store prefix (attempt models, checkpoints, the legacy model) once the rows
are gone for good.

Rows first, in the request's transaction; objects after the commit. A store that fails then
leaves objects no row names: harmless garbage (ids are never reused) that a sweep of the
store can remove later, logged here. The other way round, a failed commit would leave a
succeeded job whose model is gone.
"""

from __future__ import annotations

import logging

from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.errors import Conflict
from app.jobs.models import JobEvent, JobMetricPoint
from app.jobs.service import get_job
from app.jobs.states import TERMINAL, JobStatus
from app.storage import StorageError, get_store, job_prefix
from app.webhooks.models import WebhookDelivery

log = logging.getLogger(__name__)


def delete_job(session: Session, job_id: str, *, team_id: str) -> None:
    """Delete team `team_id`'s finished job and everything recorded about it (not committed):
    events, metric points, webhook deliveries (pending ones are not sent). 404 when unknown or
    another team's; 409 job_active while it is queued or running (cancel it first). The
    children are deleted here, not left to ON DELETE CASCADE, so the outcome does not depend
    on SQLite's foreign_keys pragma."""
    job = get_job(session, job_id, team_id=team_id)
    if JobStatus(job.status) not in TERMINAL:
        raise Conflict(
            f"job '{job.id}' is {job.status}; cancel it first, then delete it once it is cancelled",
            {"job": job.id, "status": job.status},
            code="job_active",
        )
    # A finished job stays finished (terminal statuses move nowhere): no worker races this.
    for child in (WebhookDelivery, JobEvent, JobMetricPoint):
        session.execute(delete(child).where(child.job_id == job.id))
    session.delete(job)
    session.flush()


def remove_job_objects(job_id: str) -> None:
    """Remove every object of a deleted job: all under its prefix (attempts' models and
    checkpoints; the model of a job from before 0010 lies there too, at legacy_model_key).
    A store failure is logged, not raised: the rows are gone, the objects are garbage. So are
    objects an attempt that lost its lease may still write there later."""
    try:
        removed = get_store().delete_prefix(job_prefix(job_id))
    except StorageError as exc:
        log.warning(
            "job %s deleted, but its objects under %s stay in the store (%s); they are "
            "garbage that no row names",
            job_id,
            job_prefix(job_id),
            exc,
        )
        return
    log.info("job %s deleted with its %d stored object(s)", job_id, removed)
