"""Figures read from the database when /metrics is scraped: the same from every API process, so
they need no multiprocess bookkeeping, and they are right however many processes write jobs."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from app.db.session import unit_of_work
from app.jobs.models import Job
from app.jobs.states import JobStatus
from app.jobs.waiting import queued_by_queue
from app.settings import Settings
from app.workers import service as workers

log = logging.getLogger(__name__)


class DatabaseCollector(Collector):
    """Jobs by status, queue depth, live workers per queue and failed jobs by error code.

    Queue depth is by each job's own queue (app.routing); jobs from before routing count toward
    this API's queue (EMBEDTUNE_QUEUE). When the database does not answer, only
    `embedtune_database_up 0`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "embedtune_database_up", "Whether the database answered this scrape (1) or not (0)."
        )
        try:
            by_status, failed, alive, waiting = self._read()
        except Exception:
            log.warning("metrics: the database did not answer", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        jobs = GaugeMetricFamily("embedtune_jobs", "Jobs by status.", labels=["status"])
        for status in JobStatus:
            jobs.add_metric([status.value], by_status.get(status.value, 0))
        yield jobs

        depth = GaugeMetricFamily(
            "embedtune_queue_depth", "Jobs waiting for a worker, by queue.", labels=["queue"]
        )
        waiting.setdefault(self.settings.queue, 0)
        for queue, count in sorted(waiting.items()):
            depth.add_metric([queue], count)
        yield depth

        live = GaugeMetricFamily(
            "embedtune_workers_alive",
            "Workers seen within three heartbeats, by the queue they take jobs from.",
            labels=["queue"],
        )
        alive.setdefault(self.settings.queue, 0)
        for queue, count in sorted(alive.items()):
            live.add_metric([queue], count)
        yield live

        failures = GaugeMetricFamily(
            "embedtune_jobs_failed", "Failed jobs, by error code.", labels=["error_code"]
        )
        for code, count in sorted(failed.items()):
            failures.add_metric([code], count)
        yield failures

    def _read(self) -> tuple[dict[str, int], dict[str, int], dict[str, int], dict[str, int]]:
        with unit_of_work() as session:
            by_status = {
                str(status): int(count)
                for status, count in session.execute(
                    select(Job.status, func.count()).group_by(Job.status)
                )
            }
            failed = {
                str(code or "unknown"): int(count)
                for code, count in session.execute(
                    select(Job.error_code, func.count())
                    .where(Job.status == JobStatus.FAILED.value)
                    .group_by(Job.error_code)
                )
            }
            alive = workers.alive_by_queue(session, self.settings.worker_heartbeat_s)
            waiting = queued_by_queue(session, self.settings.queue)
        return by_status, failed, alive, waiting
