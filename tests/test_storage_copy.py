"""`embedtune storage copy`: a deployment from before the object store moves its bytes into S3.

The deployment is real: a PostgreSQL database built by the migrations, datasets uploaded through
an API process on the default store (the data dir, laid out as before: `datasets/<id>.<ext>`),
a converted NLI dataset, a succeeded job whose model lies at the pre-0010 `jobs/<id>/model.tar.gz`
(no model_key), a queued job with checkpoints. The command runs as a process against a real
S3-protocol server; then an API process on the new store serves what was uploaded before.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import Team
from app.db.session import make_engine
from app.ids import new_id
from app.jobs.models import Job
from tests.conftest import REDIS_URL, TINY_MODEL, _postgres_database
from tests.support.s3 import S3Server
from tests.support.services import (
    Process,
    auth_headers,
    base_env,
    create_api_key,
    free_port,
    python_cli,
    upload,
    wait_healthy,
)
from tests.support.tiny_model import SHARED_DATA

SNLI_PAIRS = SHARED_DATA / "snli_dev_pairs.jsonl"


@dataclass
class Deployment:
    env: dict[str, str]
    data_dir: Path
    key: str
    triplets_id: str  # stored as uploaded (datasets.sha256 is the stored file's)
    nli_id: str  # stored converted to triplets (no recorded checksum of the stored file)
    legacy_job: str  # succeeded before 0010: model at jobs/<id>/model.tar.gz, model_key NULL
    new_job: str  # succeeded with an attempt-scoped model_key
    queued_job: str  # handed back, with a checkpoint to resume from
    recorded: set[str]  # every key the database refers to
    unreferenced: set[str]  # objects in the data dir that no row refers to

    def source_bytes(self, key: str) -> bytes:
        return (self.data_dir / key).read_bytes()


def _model_archive(model_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(model_dir, arcname=".")
    return buffer.getvalue()


def _put(data_dir: Path, key: str, data: bytes) -> None:
    path = data_dir / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _job_row(
    team_id: str,
    dataset_id: str,
    job_id: str,
    status: str,
    model: bytes | None,
    model_key: str | None,
) -> Job:
    """A job row as the service leaves it (a pre-0010 succeeded job has no model_key)."""
    return Job(
        id=job_id,
        team_id=team_id,
        status=status,
        base_model=TINY_MODEL,
        train_dataset=dataset_id,
        loss="mnr",
        hyperparameters={"epochs": 1, "batch_size": 8},
        model_key=model_key,
        model_size_bytes=None if model is None else len(model),
        model_sha256=None if model is None else hashlib.sha256(model).hexdigest(),
        attempt=1,
    )


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, triplet_files: dict[str, Path], model_root: Path
) -> Iterator[Deployment]:
    data_dir = tmp_path_factory.mktemp("legacy-data")
    for database_url in _postgres_database():
        env = base_env(
            database_url=database_url,
            broker_url=REDIS_URL,
            # No worker takes this queue: the jobs made here stay queued.
            queue=f"embedtune-copy-{secrets.token_hex(4)}",
            data_dir=str(data_dir),
            model_dirs=str(model_root),
        )
        subprocess.run(python_cli("migrate"), env=env, check=True, capture_output=True)
        key = create_api_key(env, "legacy")

        # Uploaded through the API on the default store: the data dir itself.
        port = free_port()
        api = Process("api-file-store", python_cli("api", "--port", str(port)), env, data_dir)
        try:
            wait_healthy(f"http://127.0.0.1:{port}", [api])
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers=auth_headers(key), timeout=60
            ) as client:
                triplets = upload(client, triplet_files["test"], "triplets")
                nli = upload(client, SNLI_PAIRS, "nli")
        finally:
            api.stop()
        assert triplets.status_code == 201, triplets.text
        assert nli.status_code == 201, nli.text
        triplets_id, nli_id = triplets.json()["id"], nli.json()["id"]
        assert nli.json()["conversion"] is not None

        archive = _model_archive(model_root / TINY_MODEL)
        legacy_job, new_job, queued_job = new_id("job"), new_id("job"), new_id("job")
        checkpoint = f"jobs/{queued_job}/checkpoints/attempt-1/checkpoint-2/"
        files = {
            f"jobs/{legacy_job}/model.tar.gz": archive,
            f"jobs/{new_job}/attempt-2/model.tar.gz": archive[:-7] + b"attempt",
            f"{checkpoint}model.safetensors": os.urandom(300_000),
            f"{checkpoint}trainer_state.json": b'{"global_step": 2}',
            f"{checkpoint}embedtune-complete": b"",
        }
        unreferenced = {
            # An attempt that lost its lease; a failed job's leftover; a dataset with no row.
            f"jobs/{new_job}/attempt-1/model.tar.gz": b"a lost attempt's model",
            f"jobs/{new_id('job')}/model.tar.gz": b"a failed job's leftover",
            f"datasets/{new_id('ds')}.jsonl": b'{"anchor": "a"}\n',
        }
        for name, data in {**files, **unreferenced}.items():
            _put(data_dir, name, data)
        # Scratch space is not the store's: never copied, never counted.
        _put(data_dir, "scratch/cache/datasets/x.jsonl", b"cached")

        engine = make_engine(database_url, pooled=False)
        try:
            with Session(engine) as session, session.begin():
                team_id = session.scalars(select(Team.id).where(Team.name == "legacy")).one()

                new_key = f"jobs/{new_job}/attempt-2/model.tar.gz"
                session.add_all(
                    [
                        _job_row(team_id, triplets_id, legacy_job, "succeeded", archive, None),
                        _job_row(
                            team_id, triplets_id, new_job, "succeeded", files[new_key], new_key
                        ),
                        _job_row(team_id, triplets_id, queued_job, "queued", None, None),
                    ]
                )
        finally:
            engine.dispose()

        recorded = set(files) | {
            f"datasets/{triplets_id}.jsonl",
            f"datasets/{nli_id}.jsonl",
        }
        assert all((data_dir / k).is_file() for k in recorded)
        yield Deployment(
            env=env,
            data_dir=data_dir,
            key=key,
            triplets_id=triplets_id,
            nli_id=nli_id,
            legacy_job=legacy_job,
            new_job=new_job,
            queued_job=queued_job,
            recorded=recorded,
            unreferenced=set(unreferenced),
        )


def storage_copy(
    deployment: Deployment, s3_server: S3Server, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        python_cli("storage", "copy", *args),
        env={**deployment.env, **s3_server.env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def stored(s3_server: S3Server, prefix: str) -> dict[str, bytes]:
    client = s3_server.client()
    return {
        full[len(prefix) + 1 :]: client.get_object(Bucket=s3_server.bucket, Key=full)["Body"].read()
        for full in s3_server.keys(prefix + "/")
    }


def outcome_lines(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Object key -> its outcome, from the per-object lines (stdout and stderr)."""
    found = {}
    for line in (result.stdout + result.stderr).splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[1] in {"dataset", "model", "checkpoint"}:
            found[parts[3]] = parts[0]
    return found


@pytest.fixture(scope="module")
def copied(deployment: Deployment, s3_server: S3Server) -> Iterator[str]:
    """The prefix of the bucket the deployment was copied into (first a dry run, then a run)."""
    prefix = f"moved-{secrets.token_hex(4)}"
    dry = storage_copy(deployment, s3_server, "--to", s3_server.url(prefix), "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert outcome_lines(dry) == dict.fromkeys(deployment.recorded, "would_copy")
    assert s3_server.keys(prefix + "/") == []

    result = storage_copy(deployment, s3_server, "--to", s3_server.url(prefix))
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcome_lines(result) == dict.fromkeys(deployment.recorded, "copied")
    assert f"copied {len(deployment.recorded)} " in result.stdout
    assert "missing 0, corrupt 0, failed 0" in result.stdout
    assert f"{len(deployment.unreferenced)} object(s) in the source belong to no" in result.stdout
    assert f"EMBEDTUNE_STORAGE_URL={s3_server.url(prefix)}" in result.stdout
    yield prefix


def test_every_recorded_object_lands_with_identical_bytes_once(
    deployment: Deployment, s3_server: S3Server, copied: str
) -> None:
    objects = stored(s3_server, copied)
    # Exactly what the database refers to: no leftovers, no scratch space.
    assert set(objects) == deployment.recorded
    for key, data in objects.items():
        assert data == deployment.source_bytes(key), key
    # The source is untouched.
    for key in deployment.recorded | deployment.unreferenced:
        assert (deployment.data_dir / key).is_file(), key

    client = s3_server.client()
    before = {
        k: client.head_object(Bucket=s3_server.bucket, Key=k)["LastModified"]
        for k in s3_server.keys(copied + "/")
    }
    again = storage_copy(deployment, s3_server, "--to", s3_server.url(copied))
    assert again.returncode == 0, again.stdout + again.stderr
    assert outcome_lines(again) == dict.fromkeys(deployment.recorded, "already_there")
    assert "copied 0 (0 B)" in again.stdout
    after = {
        k: client.head_object(Bucket=s3_server.bucket, Key=k)["LastModified"]
        for k in s3_server.keys(copied + "/")
    }
    assert after == before


def test_corrupt_and_missing_sources_are_reported_and_not_copied(
    deployment: Deployment, s3_server: S3Server, tmp_path: Path
) -> None:
    # A copy of the data dir to damage (the module's deployment stays whole).
    source = tmp_path / "source"
    for folder in ("datasets", "jobs"):
        shutil.copytree(deployment.data_dir / folder, source / folder)
    triplets_key = f"datasets/{deployment.triplets_id}.jsonl"
    legacy_key = f"jobs/{deployment.legacy_job}/model.tar.gz"
    new_model_key = f"jobs/{deployment.new_job}/attempt-2/model.tar.gz"
    nli_key = f"datasets/{deployment.nli_id}.jsonl"
    # Bytes changed after the rows were written: same size for the dataset (only the sha256
    # tells), one byte more for the model.
    data = bytearray((source / triplets_key).read_bytes())
    data[10] = ord("X") if data[10] != ord("X") else ord("Y")
    (source / triplets_key).write_bytes(bytes(data))
    (source / legacy_key).write_bytes((source / legacy_key).read_bytes() + b"\0")
    (source / new_model_key).unlink()

    prefix = f"damaged-{secrets.token_hex(4)}"
    # The destination already holds a wrong object of the right size: it is replaced.
    nli_bytes = deployment.source_bytes(nli_key)
    s3_server.client().put_object(
        Bucket=s3_server.bucket, Key=f"{prefix}/{nli_key}", Body=b"\0" * len(nli_bytes)
    )

    result = storage_copy(
        deployment, s3_server, "--from", f"file://{source}", "--to", s3_server.url(prefix)
    )
    assert result.returncode == 1, result.stdout + result.stderr
    outcomes = outcome_lines(result)
    assert outcomes == {
        **dict.fromkeys(deployment.recorded, "copied"),
        triplets_key: "corrupt",
        legacy_key: "corrupt",
        new_model_key: "missing",
    }
    assert "missing 1, corrupt 2, failed 0" in result.stdout
    assert deployment.triplets_id in result.stderr and deployment.legacy_job in result.stderr
    assert "EMBEDTUNE_STORAGE_URL=" not in result.stdout  # no "next step" for an incomplete copy

    objects = stored(s3_server, prefix)
    assert set(objects) == deployment.recorded - {triplets_key, legacy_key, new_model_key}
    assert objects[nli_key] == nli_bytes
    assert s3_server.pending_multipart_uploads() == []


def test_an_api_on_the_new_store_serves_what_was_uploaded_before(
    deployment: Deployment, s3_server: S3Server, copied: str, tmp_path: Path
) -> None:
    # Its own, empty data dir: everything it serves comes from the store and the database.
    env = {
        **deployment.env,
        **s3_server.env,
        "EMBEDTUNE_DATA_DIR": str(tmp_path / "api-data"),
        "EMBEDTUNE_STORAGE_URL": s3_server.url(copied),
    }
    port = free_port()
    api = Process("api-s3-store", python_cli("api", "--port", str(port)), env, tmp_path)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", [api])
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers=auth_headers(deployment.key), timeout=60
        ) as client:
            for dataset_id in (deployment.triplets_id, deployment.nli_id):
                got = client.get(f"/datasets/{dataset_id}")
                assert got.status_code == 200, got.text
            # Job creation reads both files for its preflight: from the new store.
            made = client.post(
                "/jobs",
                json={
                    "base_model": TINY_MODEL,
                    "train_dataset": deployment.nli_id,
                    "test_dataset": deployment.triplets_id,
                    "hyperparameters": {"epochs": 1, "batch_size": 8},
                },
            )
            assert made.status_code == 202, (made.text, api.log_tail())

            legacy_key = f"jobs/{deployment.legacy_job}/model.tar.gz"
            model = client.get(f"/jobs/{deployment.legacy_job}/model")
            assert model.status_code == 200, model.text
            assert model.content == deployment.source_bytes(legacy_key)
            assert model.headers["x-checksum-sha256"] == hashlib.sha256(model.content).hexdigest()
    finally:
        api.stop()
