"""`embedtune datasets ...` / `embedtune jobs ...` on the in-process API, and the refusal of the
`keys` commands where no database is configured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from embedtune_client import Client

from app import cli, cli_remote
from tests.client.conftest import FAKE_MODEL


@pytest.fixture
def run(api: Client, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Run `embedtune ARGS` in-process against the test app."""
    monkeypatch.setattr(cli_remote, "api_client", lambda ctx: api)
    umask = os.umask(0o022)  # `main` sets the service umask; give the test process its own back
    os.umask(umask)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli.main, list(args), catch_exceptions=False)

    yield invoke
    os.umask(umask)


def test_upload_create_get_list(run, triplet_files: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    uploaded = run("datasets", "upload", str(triplet_files["test"]), "--name", "test", "--json")
    assert uploaded.exit_code == 0, uploaded.output
    dataset = json.loads(uploaded.stdout)
    assert (dataset["name"], dataset["kind"]) == ("test", "triplet")

    created = run(
        "jobs", "create", "--base-model", FAKE_MODEL, "--train", str(triplet_files["train"]),
        "--test", dataset["id"], "--set", "batch_size=8", "--set", "precision=fp32",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    job_id = created.stdout.strip()
    job = json.loads(run("jobs", "get", job_id, "--json").stdout)
    assert job["test_dataset"] == dataset["id"]
    assert job["hyperparameters"]["batch_size"] == 8
    assert job["hyperparameters"]["precision"] == "fp32"
    assert job["resources"] == {"gpu_type": None, "gpus": 1}

    # Hardware: the job waits in the queue of two devices (any GPU type).
    on_two = run(
        "jobs", "create", "--base-model", FAKE_MODEL, "--train", dataset["id"], "--gpus", "2",
        "--set", "batch_size=8", "--json",
    )  # fmt: skip
    assert on_two.exit_code == 0, on_two.output
    two = json.loads(on_two.stdout)
    assert two["resources"] == {"gpu_type": None, "gpus": 2}
    assert two["queue"]["name"].endswith(".any.x2")

    listing = run("datasets", "list").stdout
    assert dataset["id"] in listing and "train.jsonl" in listing
    assert job_id in run("jobs", "list").stdout
    assert f"{job_id}  queued  {FAKE_MODEL}" in run("jobs", "get", job_id).stdout


def test_watch_a_cancelled_job_exits_non_zero_with_the_code(run, api: Client) -> None:  # type: ignore[no-untyped-def]
    job = api.jobs.create(base_model=FAKE_MODEL, train_dataset=_dataset(api))
    cancelled = run("jobs", "cancel", job.id)
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.stdout

    watched = run("jobs", "watch", job.id)
    assert watched.exit_code == cli_remote.EXIT_JOB_CANCELLED
    assert f"job {job.id} cancelled: cancelled" in watched.stderr

    lines = run("jobs", "watch", job.id, "--json")
    assert lines.exit_code == cli_remote.EXIT_JOB_CANCELLED
    items = [json.loads(line) for line in lines.stdout.splitlines()]
    assert items[-2]["item"] == "event" and items[-2]["type"] == "cancelled"
    assert (items[-1]["id"], items[-1]["status"]) == (job.id, "cancelled")  # the finished job


def _dataset(api: Client) -> str:
    path = Path(os.environ["EMBEDTUNE_DATA_DIR"]).parent / "one.jsonl"
    rows = [{"anchor": f"a {i}", "positive": f"p {i}", "negative": f"n {i}"} for i in range(30)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return api.datasets.upload(path).id


def test_api_errors_and_bad_options(run) -> None:  # type: ignore[no-untyped-def]
    missing = run("jobs", "get", "job_000000000000000000000000")
    assert missing.exit_code == cli_remote.EXIT_API_ERROR
    assert missing.stderr.startswith("error: not_found: ")
    as_json = run("jobs", "get", "job_000000000000000000000000", "--json")
    assert json.loads(as_json.stdout)["error"]["code"] == "not_found"
    bad = run("jobs", "create", "--base-model", "m", "--train", "ds_1", "--set", "batch_size")
    assert bad.exit_code == 2 and "expected key=value" in bad.stderr


def test_keys_commands_refuse_without_a_database(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDTUNE_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "keys", "list"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    for hint in ("EMBEDTUNE_DATABASE_URL", "EMBEDTUNE_DATA_DIR", "embedtune migrate"):
        assert hint in result.stderr
    assert list(tmp_path.iterdir()) == []  # no stray embedtune-data/embedtune.db
