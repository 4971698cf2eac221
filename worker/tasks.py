"""Celery tasks: translate a message into a call. The logic lives in worker.runner."""

from __future__ import annotations

from app.queue import RUN_JOB_TASK
from worker.celery_app import celery_app, worker_name


@celery_app.task(name=RUN_JOB_TASK, ignore_result=True)
def run_job(job_id: str) -> None:
    """Run job `job_id` if it is still queued; safe to deliver twice."""
    from worker.runner import execute_job  # imported here so the parent process stays light

    execute_job(job_id, worker_name=worker_name(run_job.request.hostname or "worker"))
