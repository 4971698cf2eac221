"""The transition table and the one function that changes a job's status."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import migrations
from app.auth.models import Team
from app.db.session import make_engine
from app.jobs.models import Job, JobEvent
from app.jobs.states import ALLOWED_TRANSITIONS, TERMINAL, JobStatus, transition


@pytest.fixture
def session(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'states.db'}"
    migrations.upgrade(url)
    engine = make_engine(url)
    with Session(engine) as s:
        s.add(Team(id="team_t", name="t"))
        s.commit()
        yield s
    engine.dispose()


def _job(session: Session, status: JobStatus = JobStatus.QUEUED) -> str:
    job = Job(
        id=f"job_{status.value}",
        team_id="team_t",
        status=status.value,
        base_model="m",
        train_dataset="ds_x",
        loss="mnr",
        hyperparameters={},
        metadata_={},
        attempt=0,
    )
    session.add(job)
    session.commit()
    return job.id


def test_terminal_statuses_move_nowhere() -> None:
    for status in TERMINAL:
        assert ALLOWED_TRANSITIONS[status] == frozenset()
    assert set(ALLOWED_TRANSITIONS) == set(JobStatus)


def test_claim_succeeds_once(session: Session) -> None:
    job_id = _job(session)
    assert transition(session, job_id, JobStatus.RUNNING, expected=JobStatus.QUEUED, attempt=1)
    # A second delivery of the same message finds the job no longer queued.
    assert not transition(session, job_id, JobStatus.RUNNING, expected=JobStatus.QUEUED)
    session.commit()
    assert session.get(Job, job_id).status == "running"  # type: ignore[union-attr]


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_finished_jobs_cannot_change(session: Session, terminal: JobStatus) -> None:
    job_id = _job(session, terminal)
    for target in JobStatus:
        assert not transition(session, job_id, target)
    session.commit()
    session.expire_all()
    assert session.get(Job, job_id).status == terminal.value  # type: ignore[union-attr]


def test_queued_cannot_skip_to_succeeded(session: Session) -> None:
    job_id = _job(session)
    assert not transition(session, job_id, JobStatus.SUCCEEDED)
    assert transition(session, job_id, JobStatus.FAILED, error_code="x")
    session.commit()
    session.expire_all()
    job = session.get(Job, job_id)
    assert job is not None and job.status == "failed" and job.error_code == "x"


def test_each_move_records_one_event_with_the_attempt(session: Session) -> None:
    job_id = _job(session)
    assert transition(session, job_id, JobStatus.RUNNING, attempt=Job.attempt + 1)
    assert not transition(session, job_id, JobStatus.RUNNING, expected=JobStatus.QUEUED)
    # Fenced by attempt: attempt 2 does not hold the job, so it cannot finish it.
    assert not transition(session, job_id, JobStatus.SUCCEEDED, where=[Job.attempt == 2])
    assert transition(
        session, job_id, JobStatus.QUEUED, event_data={"reason": "handed_back"}, attempt=1
    )
    session.commit()
    events = session.scalars(
        select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
    )
    assert [(e.type, e.attempt, e.data) for e in events] == [
        ("started", 1, {}),
        ("retried", 1, {"reason": "handed_back"}),
    ]
