"""The sweeper: expired leases are taken back, renewed ones left alone, lost jobs failed once
they were lost max_attempts times; and the conditional claim that makes redelivery harmless."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import migrations
from app.auth.models import Team
from app.db import session as db_session
from app.db.base import utcnow
from app.jobs import leases
from app.jobs.models import Job, JobEvent
from app.settings import Settings, get_settings
from tests.conftest import REDIS_URL

QUEUE = f"embedtune-leases-{secrets.token_hex(4)}"


def _messages() -> list[str]:
    """Job ids of the messages waiting in the test's queue (kombu: base64 JSON [args, ...])."""
    raw = redis.Redis.from_url(REDIS_URL).lrange(QUEUE, 0, -1)
    bodies = [json.loads(base64.b64decode(json.loads(m)["body"])) for m in raw]
    return [body[0][0] for body in bodies]


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    url = f"sqlite:///{tmp_path / 'leases.db'}"
    migrations.upgrade(url)
    # The sweeper uses the process's own session factory, as it does in the API.
    monkeypatch.setenv("EMBEDTUNE_DATABASE_URL", url)
    monkeypatch.setenv("EMBEDTUNE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EMBEDTUNE_BROKER_URL", REDIS_URL)
    monkeypatch.setenv("EMBEDTUNE_QUEUE", QUEUE)
    for cached in (get_settings, db_session.get_engine, db_session.get_sessionmaker):
        cached.cache_clear()
    from app.queue import get_celery

    get_celery.cache_clear()
    with db_session.unit_of_work() as s:
        s.add(Team(id="team_t", name="t"))
    session = db_session.get_sessionmaker()()
    yield session
    session.close()
    redis.Redis.from_url(REDIS_URL).delete(QUEUE)
    for cached in (get_settings, db_session.get_engine, db_session.get_sessionmaker, get_celery):
        cached.cache_clear()


def _running(session: Session, job_id: str, *, lease_in_s: float, lost: int = 0, **extra) -> None:
    session.add(
        Job(
            id=job_id,
            team_id="team_t",
            status="running",
            base_model="m",
            train_dataset="ds_x",
            loss="mnr",
            hyperparameters={},
            metadata_={},
            attempt=lost + 1,
            workers_lost=lost,
            worker="host:node",
            lease_expires_at=utcnow() + timedelta(seconds=lease_in_s),
            **extra,
        )
    )
    session.commit()


def _state(session: Session, job_id: str) -> Job:
    session.expire_all()
    job = session.get(Job, job_id)
    assert job is not None
    return job


def _events(session: Session, job_id: str) -> list[tuple[str, dict]]:
    rows = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
    return [(e.type, e.data) for e in rows]


def test_expired_lease_is_queued_again_and_a_live_one_is_left_alone(db: Session) -> None:
    _running(db, "job_dead", lease_in_s=-1)
    _running(db, "job_alive", lease_in_s=30)
    result = leases.sweep_expired_leases(Settings(max_attempts=3))
    assert result.requeued == ["job_dead"] and not result.failed
    dead = _state(db, "job_dead")
    assert dead.status == "queued" and dead.workers_lost == 1
    # Sent to the broker at once, for the next attempt.
    assert dead.lease_expires_at is None and dead.dispatched_at is not None
    assert _messages() == ["job_dead"]
    # The worker's host name stays server-side.
    assert _events(db, "job_dead") == [("retried", {"reason": "worker_lost"})]
    assert _state(db, "job_alive").status == "running"
    assert _events(db, "job_alive") == []


def test_the_last_allowed_loss_fails_the_job_worker_lost(db: Session) -> None:
    _running(db, "job_x", lease_in_s=-1, lost=2)
    result = leases.sweep_expired_leases(Settings(max_attempts=3))
    assert result.failed == ["job_x"]
    job = _state(db, "job_x")
    assert job.status == "failed" and job.error_code == "worker_lost"
    assert job.finished_at is not None and "3 attempt" in (job.error_message or "")
    assert [t for t, _ in _events(db, "job_x")] == ["failed"]


def test_a_lost_job_with_a_cancel_request_is_cancelled(db: Session) -> None:
    _running(db, "job_c", lease_in_s=-1, cancel_requested_at=utcnow())
    assert leases.sweep_expired_leases(Settings()).cancelled == ["job_c"]
    assert _state(db, "job_c").status == "cancelled"


def test_sweeping_twice_changes_nothing_more(db: Session) -> None:
    _running(db, "job_d", lease_in_s=-1)
    leases.sweep_expired_leases(Settings())
    again = leases.sweep_expired_leases(Settings())
    assert again.requeued == [] and again.failed == []
    assert len(_events(db, "job_d")) == 1


def test_queued_jobs_waiting_too_long_are_sent_again(db: Session) -> None:
    _running(db, "job_q", lease_in_s=0)
    job = _state(db, "job_q")
    job.status = "queued"
    job.dispatched_at = utcnow() - timedelta(hours=1)
    db.commit()
    _running(db, "job_recent", lease_in_s=0)
    recent = _state(db, "job_recent")
    recent.status = "queued"
    recent.dispatched_at = utcnow() - timedelta(seconds=5)
    db.commit()
    assert leases.redispatch_stale(Settings(redispatch_after_s=60)) == 1
    assert _messages() == ["job_q"]
    assert _state(db, "job_q").dispatched_at > utcnow() - timedelta(seconds=30)
