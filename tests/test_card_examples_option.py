"""`card_examples` goes from POST /jobs to the job row, back in JobRead, and into the worker's
TrainingSpec; stored Hub references read back as stored (the worker re-checks them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from app import migrations
from app.auth.models import Team
from app.db import session as db_session
from app.jobs.models import Job
from app.jobs.schemas import JobCreate
from app.jobs.service import create_job, to_read
from app.settings import get_settings
from worker.specs import build_spec
from worker.training.data import load_train_data
from worker.training.errors import DatasetUnavailable
from worker.training.spec import HubData

HUB = {"hub": "org/nli", "config": "triplet"}


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    migrations.upgrade(url)
    monkeypatch.setenv("EMBEDTUNE_DATABASE_URL", url)
    monkeypatch.setenv("EMBEDTUNE_DATA_DIR", str(tmp_path / "data"))
    for cached in (get_settings, db_session.get_engine, db_session.get_sessionmaker):
        cached.cache_clear()
    with db_session.unit_of_work() as s:
        s.add(Team(id="team_t", name="t"))
    session = db_session.get_sessionmaker()()
    yield session
    session.close()
    for cached in (get_settings, db_session.get_engine, db_session.get_sessionmaker):
        cached.cache_clear()


def _create(session: Session, **fields: object) -> Job:
    payload = JobCreate.model_validate({"base_model": "org/model", "train_dataset": HUB, **fields})
    job = create_job(session, payload, get_settings(), team_id="team_t")
    session.commit()
    return job


@pytest.mark.parametrize("asked", [None, False, True])
def test_card_examples_reaches_the_row_the_read_and_the_spec(db, tmp_path, asked):
    job = _create(db, **({} if asked is None else {"card_examples": asked}))
    db.expire_all()
    stored = db.get(Job, job.id)
    assert stored is not None and stored.card_examples is bool(asked)
    assert to_read(stored).card_examples is bool(asked)
    spec = build_spec(db, get_settings(), stored, tmp_path / "work", tmp_path / "out")
    assert spec.card_examples is bool(asked)


def test_a_stored_reference_from_before_the_rules_reads_back_and_fails_in_the_worker(db, tmp_path):
    job = _create(db)
    old = {"hub": "embedtune-data/datasets/x", "config": None, "split": "train"}
    job.train_dataset = {**old, "limit": None, "revision": None, "columns": None}
    db.commit()
    assert to_read(job).train_dataset.hub == old["hub"]  # type: ignore[union-attr]
    spec = build_spec(db, get_settings(), job, tmp_path / "work", tmp_path / "out")
    assert spec.train == HubData(hub=old["hub"])
    with pytest.raises(DatasetUnavailable, match="not found or is not accessible"):
        load_train_data(spec.train, tmp_path / "work")
