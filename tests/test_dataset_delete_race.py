"""DELETE /datasets/{id} racing POST /jobs on PostgreSQL: the job creation holds a share lock on
its datasets until it commits, the delete takes the row for update, so a dataset is never
deleted under a job that is being created with it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from app import migrations
from app.auth.models import Team
from app.datasets.deletion import delete_dataset
from app.datasets.models import Dataset
from app.errors import Conflict, ValidationFailed
from app.jobs.models import Job
from app.jobs.service import _check_dataset


@pytest.fixture
def sessions(postgres_url: str) -> Iterator[sessionmaker[Session]]:
    migrations.upgrade(postgres_url)
    engine = create_engine(postgres_url)
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory.begin() as s:
        s.add(Team(id="team_r", name="r"))
        s.add(
            Dataset(
                id="ds_race",
                team_id="team_r",
                name="race",
                format="jsonl",
                kind="triplet",
                columns=["anchor", "positive", "negative"],
                text_columns=["anchor", "positive", "negative"],
                rows=10,
                size_bytes=100,
                sha256="0" * 64,
                storage_key="datasets/ds_race.jsonl",
            )
        )
    yield factory
    engine.dispose()


def _in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except Exception as exc:
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_a_delete_waits_for_the_job_being_created_and_then_refuses(
    sessions: sessionmaker[Session],
) -> None:
    creating = sessions()
    assert _check_dataset(creating, "train_dataset", "ds_race", "team_r") is not None

    def delete() -> str:
        with sessions.begin() as s:
            return delete_dataset(s, "ds_race", team_id="team_r")

    thread, out = _in_thread(delete)
    time.sleep(1.0)
    assert thread.is_alive(), "the delete did not wait for the job being created"
    creating.add(
        Job(
            id="job_race",
            team_id="team_r",
            status="queued",
            base_model="m",
            train_dataset="ds_race",
            loss="mnr",
            hyperparameters={},
            metadata_={},
        )
    )
    creating.commit()
    creating.close()
    thread.join(timeout=30)
    assert isinstance(out.get("error"), Conflict), out
    assert out["error"].code == "dataset_in_use"
    assert out["error"].details["jobs"] == ["job_race"]
    with sessions() as s:
        assert s.get(Dataset, "ds_race") is not None


def test_a_job_created_during_a_delete_finds_no_dataset(sessions: sessionmaker[Session]) -> None:
    deleting = sessions()
    delete_dataset(deleting, "ds_race", team_id="team_r")  # row locked, not yet committed

    def create() -> Any:
        with sessions.begin() as s:
            return _check_dataset(s, "train_dataset", "ds_race", "team_r")

    thread, out = _in_thread(create)
    time.sleep(1.0)
    assert thread.is_alive(), "the job creation did not wait for the delete"
    deleting.commit()
    deleting.close()
    thread.join(timeout=30)
    assert isinstance(out.get("error"), ValidationFailed), out
    assert out["error"].code == "dataset_not_found"
