"""Idempotency-Key on POST /jobs and POST /datasets: replay, different body, concurrent
duplicates, scopes, expiry. Over HTTP against the real API + worker on PostgreSQL and Redis;
the service itself against migrated PostgreSQL and SQLite databases."""

from __future__ import annotations

import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.db.base import utcnow
from app.db.session import make_engine
from app.errors import ValidationFailed
from app.idempotency import service as idempotency
from app.idempotency.models import IdempotencyKey
from tests.conftest import TINY_MODEL, Stack
from tests.support.services import base_env, python_cli, upload, wait_for_job

HEADER = "Idempotency-Key"


def _key() -> str:
    return f"test-{secrets.token_hex(8)}"


@pytest.fixture(scope="module")
def train_id(pg_stack: Stack, triplet_files: dict[str, Path]) -> str:
    response = upload(pg_stack.client, triplet_files["train"], name="idempotency-train")
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _job_body(train_id: str, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "base_model": TINY_MODEL,
        "train_dataset": train_id,
        "hyperparameters": {"batch_size": 8, "max_steps": 2},
    }


def _jobs_named(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    jobs = client.get("/jobs", params={"limit": 100}).json()["data"]
    return [j for j in jobs if j["name"] == name]


def _datasets_named(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    datasets = client.get("/datasets", params={"limit": 100}).json()["data"]
    return [d for d in datasets if d["name"] == name]


def _stored_datasets(stack: Stack) -> set[str]:
    return {p.name for p in (stack.data_dir / "datasets").iterdir()}


def _upload(
    client: httpx.Client, path: Path, name: str, key: str | None, **data: str
) -> httpx.Response:
    with path.open("rb") as fh:
        return client.post(
            "/datasets",
            files={"file": (path.name, fh)},
            data={"name": name, **data},
            headers={HEADER: key} if key else None,
        )


def _deliveries(stack: Stack, job_id: str) -> int:
    """Messages for `job_id` the worker has taken so far: each is logged as a claim of the job,
    or as "nothing to do" when it was already claimed (other tests' messages do not count)."""
    worker = next(p for p in stack.processes if p.name == "worker")
    worker._log.flush()
    lines = worker.log_path.read_text(errors="replace").splitlines()
    return sum(
        1
        for line in lines
        if f"job {job_id} " in line and ("claimed by" in line or "nothing to do" in line)
    )


def _wait_deliveries(stack: Stack, job_id: str, expected: int, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while _deliveries(stack, job_id) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # a second, unwanted message would arrive within this
    return _deliveries(stack, job_id)


def test_job_retry_replays_and_creates_nothing(pg_stack: Stack, train_id: str) -> None:
    client = pg_stack.client
    name, key = f"idem-{secrets.token_hex(4)}", _key()
    body = _job_body(train_id, name)

    first = client.post("/jobs", json=body, headers={HEADER: key})
    assert first.status_code == 202, first.text
    job_id = first.json()["id"]
    assert first.headers["location"] == f"/jobs/{job_id}"
    assert "idempotent-replayed" not in first.headers

    # Same body, other key order: the same request.
    retry = client.post("/jobs", json=dict(reversed(body.items())), headers={HEADER: key})
    assert retry.status_code == 202, retry.text
    assert retry.text == first.text
    assert retry.headers["location"] == f"/jobs/{job_id}"
    assert retry.headers["idempotent-replayed"] == "true"

    other = client.post("/jobs", json={**body, "name": f"{name}-x"}, headers={HEADER: key})
    assert other.status_code == 422, other.text
    error = other.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert HEADER in error["message"] and "new key" in error["message"]
    assert error["details"]["field"] == HEADER and error["details"]["resource_id"] == job_id

    assert [j["id"] for j in _jobs_named(client, name)] == [job_id]
    assert not _jobs_named(client, f"{name}-x")
    final, _ = wait_for_job(client, job_id)
    assert final["status"] == "succeeded", (final, pg_stack.logs())
    # The replay sent nothing to the broker: the job was dispatched once.
    assert _wait_deliveries(pg_stack, job_id, 1) == 1
    # The key still replays the original response after the job ran.
    again = client.post("/jobs", json=body, headers={HEADER: key})
    assert again.status_code == 202 and again.json() == first.json()


def test_failed_request_leaves_no_key(pg_stack: Stack, train_id: str) -> None:
    client = pg_stack.client
    name, key = f"idem-{secrets.token_hex(4)}", _key()
    bad = client.post(
        "/jobs", json=_job_body("ds_doesnotexist0000000000", name), headers={HEADER: key}
    )
    assert bad.status_code == 422, bad.text
    good = client.post("/jobs", json=_job_body(train_id, name), headers={HEADER: key})
    assert good.status_code == 202, good.text
    assert wait_for_job(client, good.json()["id"])[0]["status"] == "succeeded"


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "tab\there"])
def test_malformed_key_is_rejected(pg_stack: Stack, train_id: str, key: str) -> None:
    name = f"idem-{secrets.token_hex(4)}"
    response = pg_stack.client.post("/jobs", json=_job_body(train_id, name), headers={HEADER: key})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "idempotency_key_invalid" and HEADER in error["message"]
    assert error["details"] == {"field": HEADER, "location": "header"}
    assert not _jobs_named(pg_stack.client, name)


def test_longest_key_is_accepted(pg_stack: Stack, triplet_files: dict[str, Path]) -> None:
    key = "".join(chr(c) for c in range(33, 127)) * 2 + "k" * (255 - 2 * 94)
    name = f"idem-{secrets.token_hex(4)}"
    first = _upload(pg_stack.client, triplet_files["test"], name, key)
    assert first.status_code == 201, first.text
    retry = _upload(pg_stack.client, triplet_files["test"], name, key)
    assert retry.status_code == 201 and retry.json() == first.json()


def test_dataset_retry_replays_and_stores_nothing(
    pg_stack: Stack, triplet_files: dict[str, Path]
) -> None:
    client = pg_stack.client
    name, key = f"idem-{secrets.token_hex(4)}", _key()
    first = _upload(client, triplet_files["test"], name, key)
    assert first.status_code == 201, first.text
    stored = _stored_datasets(pg_stack)

    retry = _upload(client, triplet_files["test"], name, key)
    assert retry.status_code == 201, retry.text
    assert retry.text == first.text
    assert retry.headers["idempotent-replayed"] == "true"
    assert [d["id"] for d in _datasets_named(client, name)] == [first.json()["id"]]
    assert _stored_datasets(pg_stack) == stored  # the retry's file was removed

    # Another file, another name or another mapping under the same key: rejected, not stored.
    for path, other_name, extra in (
        (triplet_files["train"], name, {}),
        (triplet_files["test"], f"{name}-x", {}),
        (triplet_files["test"], name, {"column_mapping": '{"anchor": "anchor"}'}),
    ):
        other = _upload(client, path, other_name, key, **extra)
        assert other.status_code == 422, other.text
        assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert _stored_datasets(pg_stack) == stored
    assert len(_datasets_named(client, name)) == 1 and not _datasets_named(client, f"{name}-x")
    assert not list((pg_stack.data_dir / "scratch" / "uploads").glob("*.part*"))


def test_same_key_on_jobs_and_datasets_does_not_clash(
    pg_stack: Stack, triplet_files: dict[str, Path]
) -> None:
    client = pg_stack.client
    name, key = f"idem-{secrets.token_hex(4)}", _key()
    dataset = _upload(client, triplet_files["train"], name, key)
    assert dataset.status_code == 201, dataset.text
    job = client.post("/jobs", json=_job_body(dataset.json()["id"], name), headers={HEADER: key})
    assert job.status_code == 202, job.text
    assert "idempotent-replayed" not in job.headers
    assert wait_for_job(client, job.json()["id"])[0]["status"] == "succeeded"


def _at_once(n: int, send: Any) -> list[httpx.Response]:
    """Send n requests from n threads, released together."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = send()
        except Exception as exc:  # surfaced by the assertions below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_concurrent_duplicate_jobs_create_one(pg_stack: Stack, train_id: str) -> None:
    name, key = f"idem-{secrets.token_hex(4)}", _key()
    body = _job_body(train_id, name)

    def send() -> httpx.Response:
        with httpx.Client(
            base_url=pg_stack.base_url, timeout=60, headers=pg_stack.client.headers
        ) as client:
            return client.post("/jobs", json=body, headers={HEADER: key})

    responses = _at_once(8, send)
    assert all(isinstance(r, httpx.Response) for r in responses), responses
    assert [r.status_code for r in responses] == [202] * 8, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len({r.text for r in responses}) == 1  # byte for byte the original response
    job_id = responses[0].json()["id"]
    assert {r.headers["location"] for r in responses} == {f"/jobs/{job_id}"}
    assert sum("idempotent-replayed" not in r.headers for r in responses) == 1
    assert [j["id"] for j in _jobs_named(pg_stack.client, name)] == [job_id]
    assert wait_for_job(pg_stack.client, job_id)[0]["status"] == "succeeded"
    assert _wait_deliveries(pg_stack, job_id, 1) == 1


def test_concurrent_duplicate_uploads_store_one(
    pg_stack: Stack, triplet_files: dict[str, Path]
) -> None:
    name, key = f"idem-{secrets.token_hex(4)}", _key()
    stored = _stored_datasets(pg_stack)

    def send() -> httpx.Response:
        with httpx.Client(
            base_url=pg_stack.base_url, timeout=60, headers=pg_stack.client.headers
        ) as client:
            return _upload(client, triplet_files["test"], name, key)

    responses = _at_once(6, send)
    assert all(isinstance(r, httpx.Response) for r in responses), responses
    assert [r.status_code for r in responses] == [201] * 6, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(_datasets_named(pg_stack.client, name)) == 1
    assert len(_stored_datasets(pg_stack) - stored) == 1


# --- the service against a migrated database ------------------------------------------------


def _migrated_sessions(url: str) -> Iterator[sessionmaker[Session]]:
    result = subprocess.run(
        python_cli("migrate"), env=base_env(database_url=url), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    engine = make_engine(url)
    try:
        yield sessionmaker(bind=engine, expire_on_commit=False)
    finally:
        engine.dispose()


@pytest.fixture(params=["postgres", "sqlite"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'embedtune.db'}"
    yield from _migrated_sessions(url)


@contextmanager
def _unit(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """Like a request's unit of work: commit at the end (after any rollback inside)."""
    with sessions() as session:
        yield session
        session.commit()


class _Body(BaseModel):
    id: str


def _count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(IdempotencyKey)) or 0)


def test_service_find_save_reuse_and_scopes(sessions: sessionmaker[Session]) -> None:
    req = idempotency.request_for("POST /jobs", "k1", {"a": 1, "b": [1, 2]})
    assert req is not None and idempotency.request_for("POST /jobs", None, {}) is None
    with _unit(sessions) as session:
        assert idempotency.find(session, req) is None
        won = idempotency.save(
            session, req, status_code=202, body=_Body(id="job_1"), resource_id="job_1", ttl_s=60
        )
        assert won is None
    with _unit(sessions) as session:
        same = idempotency.request_for("POST /jobs", "k1", {"b": [1, 2], "a": 1})
        assert same is not None
        stored = idempotency.find(session, same)
        assert stored == idempotency.StoredResponse(202, '{"id":"job_1"}', "job_1")
        other = idempotency.request_for("POST /jobs", "k1", {"a": 2, "b": [1, 2]})
        assert other is not None
        with pytest.raises(ValidationFailed) as caught:
            idempotency.find(session, other)
        assert caught.value.code == "idempotency_key_reused"
        # Another endpoint: another scope, so the key is new there.
        datasets = idempotency.request_for("POST /datasets", "k1", {"a": 1, "b": [1, 2]})
        assert datasets is not None and idempotency.find(session, datasets) is None
        # A duplicate committed first: save() rolls back and hands back the first response.
        replay = idempotency.save(
            session, same, status_code=202, body=_Body(id="job_2"), resource_id="job_2", ttl_s=60
        )
        assert replay == stored
    with sessions() as session:
        assert _count(session) == 1


def test_service_expiry_and_purge(sessions: sessionmaker[Session]) -> None:
    now = utcnow()
    old = idempotency.request_for("POST /jobs", "old", {"x": 1})
    live = idempotency.request_for("POST /jobs", "live", {"x": 1})
    assert old is not None and live is not None
    with _unit(sessions) as session:
        for req, ago in ((old, 7200), (live, 60)):
            idempotency.save(
                session,
                req,
                status_code=202,
                body=_Body(id=req.key),
                resource_id=req.key,
                ttl_s=3600,
                now=now - timedelta(seconds=ago),
            )
    with _unit(sessions) as session:
        # Kept for its ttl: found just before it ends, gone after.
        assert idempotency.find(session, live, now=now + timedelta(seconds=3539)) is not None
        assert idempotency.purge_expired(session, now=now) == 1
        assert idempotency.purge_expired(session, now=now) == 0
        assert _count(session) == 1
    with _unit(sessions) as session:
        assert idempotency.find(session, old, now=now) is None
        # After expiry a key is new, even with another body: find() makes way for it.
        reused = idempotency.request_for("POST /jobs", "live", {"x": 2})
        assert reused is not None
        assert idempotency.find(session, reused, now=now + timedelta(seconds=3600)) is None
        assert (
            idempotency.save(
                session,
                reused,
                status_code=202,
                body=_Body(id="new"),
                resource_id="new",
                ttl_s=3600,
                now=now + timedelta(seconds=3600),
            )
            is None
        )
    with sessions() as session:
        stored = idempotency.find(session, reused)
        assert stored is not None and stored.resource_id == "new"


def test_service_concurrent_save_on_postgres(postgres_url: str) -> None:
    """The loser's insert waits for the winner's commit, then replays the winner's response."""
    with contextmanager(_migrated_sessions)(postgres_url) as sessions:
        req = idempotency.request_for("POST /jobs", "race", {"x": 1})
        assert req is not None
        winner = sessions()
        idempotency.save(
            winner, req, status_code=202, body=_Body(id="first"), resource_id="first", ttl_s=60
        )
        outcome: list[Any] = []

        def lose() -> None:
            with sessions() as loser:
                outcome.append(
                    idempotency.save(
                        loser,
                        req,
                        status_code=202,
                        body=_Body(id="second"),
                        resource_id="second",
                        ttl_s=60,
                    )
                )

        thread = threading.Thread(target=lose)
        thread.start()
        time.sleep(0.5)
        assert not outcome  # blocked on the winner's uncommitted row
        winner.commit()
        winner.close()
        thread.join(timeout=30)
        assert outcome == [idempotency.StoredResponse(202, '{"id":"first"}', "first")]
