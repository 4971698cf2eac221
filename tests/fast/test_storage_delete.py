"""DELETE /datasets/{id} and DELETE /jobs/{id} in-process, on the default folder store: the rows
and the objects go, other teams get 404 and lose nothing, a dataset a queued or running job
uses is 409 dataset_in_use, an active job is 409 job_active; and the same through the CLI.
On a real S3 server: tests/test_storage_api.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from embedtune_client import Client
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app import cli, cli_remote
from app.auth import service as auth_service
from app.db.session import unit_of_work
from app.ids import new_id
from app.jobs.models import JobEvent, JobMetricPoint
from app.jobs.states import JobStatus, transition
from app.storage import get_store, job_prefix, model_key
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.fast.conftest import client_for
from tests.fast.test_security_http import create_job, upload
from tests.fast.test_storage_download import model_archive, succeeded_job_with_model
from tests.fast.test_stream import make_job, start


def data_dir(settings_env: dict[str, str]) -> Path:
    """The default store is the data dir itself."""
    return Path(settings_env["EMBEDTUNE_DATA_DIR"])


def assert_error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code, error
    return dict(error)


def set_status(job_id: str, status: JobStatus) -> None:
    with unit_of_work() as session:
        assert transition(session, job_id, status)


# --- datasets ----------------------------------------------------------------------------------


def test_deleting_a_dataset_removes_its_row_and_file(
    team_client: Callable[[str], TestClient], settings_env: dict[str, str]
) -> None:
    client = team_client("alpha")
    dataset = upload(client)
    kept = upload(client)
    stored = data_dir(settings_env) / "datasets" / f"{dataset['id']}.jsonl"
    assert stored.is_file()

    r = client.delete(f"/datasets/{dataset['id']}")
    assert r.status_code == 204 and r.content == b""
    assert_error(client.get(f"/datasets/{dataset['id']}"), 404, "not_found")
    assert not stored.exists()
    assert [d["id"] for d in client.get("/datasets").json()["data"]] == [kept["id"]]
    assert_error(client.delete(f"/datasets/{dataset['id']}"), 404, "not_found")
    assert (data_dir(settings_env) / "datasets" / f"{kept['id']}.jsonl").is_file()


def test_another_teams_dataset_is_404_and_stays(
    team_client: Callable[[str], TestClient], settings_env: dict[str, str]
) -> None:
    owner = team_client("alpha")
    dataset = upload(owner)
    assert_error(team_client("beta").delete(f"/datasets/{dataset['id']}"), 404, "not_found")
    assert owner.get(f"/datasets/{dataset['id']}").status_code == 200
    assert (data_dir(settings_env) / "datasets" / f"{dataset['id']}.jsonl").is_file()


def test_a_dataset_that_an_active_job_uses_is_409_and_a_finished_one_keeps_its_record(
    team_client: Callable[[str], TestClient], settings_env: dict[str, str]
) -> None:
    client = team_client("alpha")
    train, test = upload(client), upload(client)
    first = create_job(client, train["id"], test_dataset=test["id"])["id"]
    second = create_job(client, train["id"])["id"]

    # In any role; every active job that uses it is named.
    error = assert_error(client.delete(f"/datasets/{train['id']}"), 409, "dataset_in_use")
    assert error["details"] == {"dataset": train["id"], "jobs": [first, second]}
    assert first in error["message"] and "cancel" in error["message"]
    error = assert_error(client.delete(f"/datasets/{test['id']}"), 409, "dataset_in_use")
    assert error["details"]["jobs"] == [first]

    set_status(first, JobStatus.RUNNING)  # running: still in use
    assert_error(client.delete(f"/datasets/{test['id']}"), 409, "dataset_in_use")
    assert (data_dir(settings_env) / "datasets" / f"{test['id']}.jsonl").is_file()

    set_status(first, JobStatus.FAILED)
    assert client.delete(f"/datasets/{test['id']}").status_code == 204
    job = client.get(f"/jobs/{first}")
    assert job.status_code == 200 and job.json()["test_dataset"] == test["id"]  # dangling

    assert client.post(f"/jobs/{second}/cancel").status_code == 202  # queued: cancelled at once
    assert client.delete(f"/datasets/{train['id']}").status_code == 204
    assert not (data_dir(settings_env) / "datasets" / f"{train['id']}.jsonl").exists()


# --- jobs --------------------------------------------------------------------------------------


def _count(model: Any, job_id: str) -> int:
    with unit_of_work() as session:
        return int(session.scalar(select(func.count()).where(model.job_id == job_id)) or 0)


def _subscribe(team: str) -> None:
    """A webhook endpoint of `team` for job.succeeded: the job's success writes a delivery."""
    with unit_of_work() as session:
        owner, _ = auth_service.ensure_team(session, team)
        session.add(
            WebhookEndpoint(
                id=new_id("wh"),
                team_id=owner.id,
                url="https://hooks.example.com/embedtune",
                events=["job.succeeded"],
                secret="whsec_" + "A" * 32,
            )
        )


def _put(key: str, data: bytes = b"bytes") -> None:
    with get_store().writer(key) as out:
        out.write(data)
        out.commit()


def test_deleting_a_finished_job_removes_its_records_and_objects(
    team_client: Callable[[str], TestClient], settings_env: dict[str, str]
) -> None:
    client = team_client("alpha")
    _subscribe("alpha")
    job_id = succeeded_job_with_model("alpha", model_archive())
    with unit_of_work() as session:
        session.add(
            JobMetricPoint(job_id=job_id, kind="train", step=1, epoch=0.5, values={"loss": 1.0})
        )
    # Whatever a job may have in the store: checkpoints, another attempt's model, the legacy key.
    for key in (
        f"{job_prefix(job_id)}checkpoints/attempt-1/checkpoint-2/model.safetensors",
        model_key(job_id, 2),
        f"{job_prefix(job_id)}model.tar.gz",
    ):
        _put(key)
    other = succeeded_job_with_model("alpha", model_archive())
    assert [_count(m, job_id) > 0 for m in (JobEvent, JobMetricPoint, WebhookDelivery)] == [
        True,
        True,
        True,
    ]
    assert len(list(get_store().list(job_prefix(job_id)))) == 4

    assert_error(team_client("beta").delete(f"/jobs/{job_id}"), 404, "not_found")
    assert client.get(f"/jobs/{job_id}/model").status_code == 200

    r = client.delete(f"/jobs/{job_id}")
    assert r.status_code == 204 and r.content == b""
    assert_error(client.get(f"/jobs/{job_id}"), 404, "not_found")
    assert_error(client.get(f"/jobs/{job_id}/events"), 404, "not_found")
    assert [_count(m, job_id) for m in (JobEvent, JobMetricPoint, WebhookDelivery)] == [0, 0, 0]
    assert list(get_store().list(job_prefix(job_id))) == []
    assert not (data_dir(settings_env) / "jobs" / job_id).exists()
    assert_error(client.delete(f"/jobs/{job_id}"), 404, "not_found")
    # Another job of the team keeps everything.
    assert client.get(f"/jobs/{other}/model").status_code == 200
    assert _count(JobEvent, other) > 0


def test_a_queued_or_running_job_is_409_until_it_is_cancelled(
    team_client: Callable[[str], TestClient],
) -> None:
    client = team_client("alpha")
    job_id = make_job("alpha")
    error = assert_error(client.delete(f"/jobs/{job_id}"), 409, "job_active")
    assert error["details"] == {"job": job_id, "status": "queued"}
    assert "cancel it first" in error["message"]
    start(job_id)
    error = assert_error(client.delete(f"/jobs/{job_id}"), 409, "job_active")
    assert error["details"]["status"] == "running"
    # A cancel request does not end a running job at once: still 409 until it is cancelled.
    assert client.post(f"/jobs/{job_id}/cancel").status_code == 202
    assert_error(client.delete(f"/jobs/{job_id}"), 409, "job_active")
    set_status(job_id, JobStatus.CANCELLED)
    assert client.delete(f"/jobs/{job_id}").status_code == 204


# --- the CLI (through the client) ----------------------------------------------------------------


@pytest.fixture
def run(app, make_key, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Result]]:  # type: ignore[no-untyped-def]
    """`embedtune ARGS` in-process, talking to the app as team alpha."""
    api = Client(url="http://testserver", api_key=make_key("alpha"), http=client_for(app))
    monkeypatch.setattr(cli_remote, "api_client", lambda ctx: api)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli.main, list(args), catch_exceptions=False)

    yield invoke
    api.close()


def test_the_cli_deletes_datasets_and_jobs(
    run: Callable[..., Result], team_client: Callable[[str], TestClient]
) -> None:
    client = team_client("alpha")
    dataset = upload(client)
    job_id = create_job(client, dataset["id"])["id"]

    refused = run("datasets", "delete", dataset["id"])
    assert refused.exit_code == 1
    assert "dataset_in_use" in refused.stderr and job_id in refused.stderr
    refused = run("jobs", "delete", job_id, "--json")
    assert refused.exit_code == 1
    assert json.loads(refused.stdout)["error"]["code"] == "job_active"

    assert run("jobs", "cancel", job_id).exit_code == 0
    deleted = run("jobs", "delete", job_id)
    assert deleted.exit_code == 0, deleted.output
    assert deleted.stdout.strip() == f"{job_id}: deleted"
    deleted = run("datasets", "delete", dataset["id"], "--json")
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(deleted.stdout) == {"dataset": dataset["id"], "deleted": True}
    assert client.get(f"/datasets/{dataset['id']}").status_code == 404

    gone = run("datasets", "delete", dataset["id"])
    assert gone.exit_code == 1 and "not_found" in gone.stderr
