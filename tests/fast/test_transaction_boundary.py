"""One transaction per request, committed in one place (app.deps), with the work that must wait
for the commit (sending a job to the broker, deleting stored objects) run after it and never
for a transaction that rolled back (app.db.session.after_commit)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import event, select

from app.auth import service as auth_service
from app.auth.cache import keys_seen
from app.db import session as db_session
from app.jobs.models import Job
from tests.fast.conftest import client_for
from tests.fast.test_routing_api import sent
from tests.fast.test_security_http import create_job, upload


@contextmanager
def counted_transactions() -> Iterator[list[str]]:
    """The transactions begun on the app's engine while the block runs."""
    begun: list[str] = []
    engine = db_session.get_engine()

    def on_begin(_conn: object) -> None:
        begun.append("begin")

    event.listen(engine, "begin", on_begin)
    try:
        yield begun
    finally:
        event.remove(engine, "begin", on_begin)


def test_a_read_with_a_remembered_key_is_one_transaction(
    app: FastAPI, make_key: Callable[[str], str]
) -> None:
    keys_seen.clear()
    client = client_for(app, make_key("a"))
    job = create_job(client, upload(client)["id"])
    for path in (f"/jobs/{job['id']}", "/jobs?limit=20"):
        with counted_transactions() as begun:
            assert client.get(path).status_code == 200
        assert len(begun) == 1, path


def test_a_key_not_remembered_costs_one_short_transaction_more(
    app: FastAPI, make_key: Callable[[str], str]
) -> None:
    keys_seen.clear()
    client = client_for(app, make_key("a"))
    with counted_transactions() as begun:
        assert client.get("/jobs").status_code == 200
    assert len(begun) == 2  # the key's lookup (and last-use stamp), then the route's


def test_a_new_job_is_sent_once_committed(
    app: FastAPI, make_key: Callable[[str], str], settings_env: dict[str, str]
) -> None:
    broker = Path(settings_env["EMBEDTUNE_BROKER_URL"].removeprefix("filesystem://"))
    client = client_for(app, make_key("a"))
    job = create_job(client, upload(client)["id"])
    assert job["id"] in sent(broker)
    with db_session.unit_of_work() as session:
        dispatched = session.scalar(select(Job.dispatched_at).where(Job.id == job["id"]))
    assert dispatched is not None


def test_after_commit_runs_after_the_commit_and_never_after_a_rollback(
    settings_env: dict[str, str],
) -> None:
    seen: list[bool] = []

    def committed_team_visible() -> None:
        with db_session.unit_of_work() as other:
            seen.append(auth_service.find_team(other, "t") is not None)

    with pytest.raises(RuntimeError), db_session.unit_of_work() as session:
        auth_service.create_team(session, "t")
        db_session.after_commit(session, committed_team_visible)
        raise RuntimeError("the request failed")
    assert seen == []

    with db_session.unit_of_work() as session:
        auth_service.create_team(session, "t")
        db_session.after_commit(session, committed_team_visible)
    assert seen == [True]
