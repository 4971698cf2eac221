# ruff: noqa: F811  (the fast tier's fixtures are imported, then requested by name)
"""The API on a real S3-protocol server (moto_server, tests/support/s3.py): uploads stream into
the bucket as they arrive and leave no object and no pending multipart upload when refused
(413 half-way, 422, a client that goes away); downloads stream the same bytes with their
checksum, or answer 307 to a presigned URL that serves them (followed by the client and the
CLI); deletes remove the objects; a stopped or silent store shows on /health within seconds
and makes uploads answer 503 storage_unavailable.

The app runs in-process (the fast tier's app_with, on a migrated SQLite copy), with a fresh
prefix of the session's bucket per test; where a test needs a body that streams in pieces, or
a client that follows a redirect to another host, it is served by uvicorn in a thread."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from embedtune_client import Client
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app import cli, cli_remote
from app.datasets.models import Dataset
from app.db.session import unit_of_work
from app.jobs.models import JobEvent
from app.settings import get_settings
from app.storage import get_store, job_prefix, model_key
from tests.fast.conftest import (  # noqa: F401  (fixtures)
    app_with,
    client_for,
    make_key,
    migrated_template,
    model_dir,
    settings_env,
)
from tests.fast.test_storage_download import model_archive, succeeded_job_with_model
from tests.support.health import health_until
from tests.support.s3 import S3_ENV, S3Server
from tests.support.services import free_port
from tests.support.tiny_model import SHARED_DATA

MB = 1024 * 1024
BOUNDARY = "storage-api-test-5e1f"
TEAM = "alpha"


@dataclass
class S3Api:
    app: FastAPI
    server: S3Server
    prefix: str
    key: str  # an API key of TEAM

    def client(self) -> TestClient:
        return client_for(self.app, self.key)

    def objects(self, under: str = "") -> list[str]:
        """Keys under this test's prefix (without it)."""
        root = f"{self.prefix}/"
        return [k.removeprefix(root) for k in self.server.keys(root + under)]

    def pending_uploads(self) -> list[str]:
        return [k for k in self.server.pending_multipart_uploads() if k.startswith(self.prefix)]

    def object_bytes(self, key: str) -> bytes:
        answer = self.server.client().get_object(
            Bucket=self.server.bucket, Key=f"{self.prefix}/{key}"
        )
        return bytes(answer["Body"].read())


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def s3_api(app_with, make_key, s3_server: S3Server, aws_env: None) -> Callable[..., S3Api]:  # type: ignore[no-untyped-def]
    """Factory: the app on a fresh prefix of `server` (default: the session's; reached at
    `endpoint_url`, default the server's own), with more EMBEDTUNE_* settings."""

    def make(
        server: S3Server = s3_server, endpoint_url: str | None = None, **settings: str
    ) -> S3Api:
        prefix = f"api-{secrets.token_hex(4)}"
        endpoint = endpoint_url or server.endpoint_url
        app = app_with(STORAGE_URL=server.url(prefix), S3_ENDPOINT_URL=endpoint, **settings)
        return S3Api(app, server, prefix, make_key(TEAM))

    return make


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """`app` served by uvicorn on a free loopback port (in a thread); yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def triplet_rows(size: int) -> bytes:
    """Distinct JSONL triplets, about `size` bytes."""
    lines: list[str] = []
    total = i = 0
    while total < size:
        line = json.dumps(
            {
                "anchor": f"question {i}: how do I rotate the signing key of service {i}?",
                "positive": f"answer {i}: rotate it with the admin API, then restart {i}",
                "negative": f"unrelated {i}: the cafeteria opens at eight on weekdays",
            }
        )
        lines.append(line + "\n")
        total += len(line) + 1
        i += 1
    return "".join(lines).encode()


def file_part_head(filename: str = "train.jsonl") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


FORM_END = f"\r\n--{BOUNDARY}--\r\n".encode()


def pieces(data: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def post_in_two_halves(
    base_url: str, api: S3Api, first: bytes, second: bytes | None
) -> httpx.Response:
    """POST /datasets with a chunked body: `first`, then (once a multipart upload of this
    test's prefix is pending in the bucket: the bytes are going to the store while they
    arrive) `second`; with `second` None, the client goes away instead."""

    def body() -> Iterator[bytes]:
        yield from pieces(first)
        wait_until(lambda: bool(api.pending_uploads()), "a multipart upload is pending")
        if second is None:
            raise ConnectionAbortedError("the client goes away")
        yield from pieces(second)

    with httpx.Client(base_url=base_url, timeout=120) as http:
        return http.post(
            "/datasets",
            content=body(),
            headers={
                "Authorization": f"Bearer {api.key}",
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            },
        )


def assert_nothing_kept(api: S3Api) -> None:
    assert api.objects("datasets/") == []
    assert api.pending_uploads() == []
    with unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(Dataset)) == 0


# --- uploads -----------------------------------------------------------------------------------


def test_an_upload_streams_into_the_bucket_and_is_kept_under_its_dataset_key(
    s3_api: Callable[..., S3Api],
) -> None:
    api = s3_api()
    rows = triplet_rows(9 * MB + MB // 2)  # more than one 8 MiB part: a multipart upload
    half = 9 * MB
    with serving(api.app) as base_url:
        r = post_in_two_halves(
            base_url, api, file_part_head() + rows[:half], rows[half:] + FORM_END
        )
    assert r.status_code == 201, r.text
    dataset = r.json()
    key = f"datasets/{dataset['id']}.jsonl"
    assert api.objects() == [key]
    assert api.pending_uploads() == []
    assert api.object_bytes(key) == rows
    assert dataset["sha256"] == hashlib.sha256(rows).hexdigest()
    # The API keeps its copy of what it stored: creating a job reads it without a download.
    cached = get_settings().scratch_dir / "cache" / key
    assert cached.stat().st_size == len(rows)
    assert not list((get_settings().scratch_dir / "uploads").iterdir())
    job = api.client().post("/jobs", json={"base_model": "tiny", "train_dataset": dataset["id"]})
    assert job.status_code == 202, job.text


def test_small_uploads_nli_conversion_and_an_idempotent_retry(
    s3_api: Callable[..., S3Api],
) -> None:
    api = s3_api()
    client = api.client()
    rows = triplet_rows(20_000)
    headers = {"Idempotency-Key": "upload-once"}
    first = client.post("/datasets", files={"file": ("t.jsonl", rows)}, headers=headers)
    assert first.status_code == 201, first.text
    again = client.post("/datasets", files={"file": ("t.jsonl", rows)}, headers=headers)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert api.objects() == [f"datasets/{first.json()['id']}.jsonl"]

    # NLI pairs are stored converted to triplets: the raw bytes streamed in are not kept.
    pairs = (SHARED_DATA / "snli_dev_pairs.jsonl").read_bytes()
    nli = client.post("/datasets", files={"file": ("pairs.jsonl", pairs)})
    assert nli.status_code == 201, nli.text
    key = f"datasets/{nli.json()['id']}.jsonl"
    assert sorted(api.objects()) == sorted([key, f"datasets/{first.json()['id']}.jsonl"])
    stored = api.object_bytes(key).splitlines()
    assert len(stored) == nli.json()["rows"]
    assert set(json.loads(stored[0])) >= {"anchor", "positive", "negative"}
    assert api.pending_uploads() == []


def test_an_upload_over_the_limit_half_way_leaves_no_object_and_no_pending_upload(
    s3_api: Callable[..., S3Api],
) -> None:
    api = s3_api(MAX_UPLOAD_BYTES=str(10 * MB))
    rows = triplet_rows(12 * MB)
    with serving(api.app) as base_url:
        r = post_in_two_halves(
            base_url, api, file_part_head() + rows[: 9 * MB], rows[9 * MB : 11 * MB]
        )
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "payload_too_large"
    assert_nothing_kept(api)


def test_an_invalid_upload_leaves_no_object_and_no_pending_upload(
    s3_api: Callable[..., S3Api],
) -> None:
    api = s3_api()
    rows = triplet_rows(9 * MB + MB // 2)
    invalid = b'{"anchor": "a question", "positive": ""}\n'
    with serving(api.app) as base_url:
        r = post_in_two_halves(
            base_url, api, file_part_head() + rows[: 9 * MB], rows[9 * MB :] + invalid + FORM_END
        )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "dataset_invalid"
    assert_nothing_kept(api)

    # A small one (a single PUT at commit, which never comes), and a bad form field.
    client = api.client()
    small = client.post("/datasets", files={"file": ("t.jsonl", invalid)})
    assert small.status_code == 422 and small.json()["error"]["code"] == "dataset_invalid"
    bad_field = client.post(
        "/datasets",
        files={"file": ("t.jsonl", triplet_rows(5000))},
        data={"column_mapping": "not json"},
    )
    assert bad_field.status_code == 422, bad_field.text
    assert_nothing_kept(api)


def test_a_client_that_goes_away_half_way_leaves_no_pending_upload(
    s3_api: Callable[..., S3Api],
) -> None:
    api = s3_api()
    rows = triplet_rows(9 * MB)
    with serving(api.app) as base_url:
        with pytest.raises(ConnectionAbortedError):
            post_in_two_halves(base_url, api, file_part_head() + rows, None)
        wait_until(lambda: not api.pending_uploads(), "the upload is aborted", timeout=15)
    assert_nothing_kept(api)


# --- downloads ---------------------------------------------------------------------------------


def test_the_model_streams_from_the_bucket_with_its_checksum(
    s3_api: Callable[..., S3Api],
) -> None:
    api = s3_api()
    archive = model_archive()
    job_id = succeeded_job_with_model(TEAM, archive)
    assert api.objects() == [model_key(job_id, 1)]
    r = api.client().get(f"/jobs/{job_id}/model")
    assert r.status_code == 200, r.text
    assert r.content == archive
    assert r.headers["content-length"] == str(len(archive))
    assert r.headers["x-checksum-sha256"] == hashlib.sha256(archive).hexdigest()
    assert r.headers["content-disposition"] == f'attachment; filename="{job_id}-model.tar.gz"'
    head = api.client().head(f"/jobs/{job_id}/model")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(archive))


def test_redirect_mode_answers_307_to_a_presigned_url_the_client_and_cli_follow(
    s3_api: Callable[..., S3Api], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = s3_api(DOWNLOAD_REDIRECT="1", DOWNLOAD_URL_TTL_S="120")
    archive = model_archive("r")
    job_id = succeeded_job_with_model(TEAM, archive)
    checksum = hashlib.sha256(archive).hexdigest()

    r = api.client().get(f"/jobs/{job_id}/model", follow_redirects=False)
    assert r.status_code == 307, r.text
    location = r.headers["location"]
    assert location.startswith(f"{api.server.endpoint_url}/{api.server.bucket}/{api.prefix}/")
    assert "X-Amz-Expires=120" in location
    assert r.headers["x-checksum-sha256"] == checksum
    assert r.headers["cache-control"] == "no-store"
    fetched = httpx.get(location)  # no API key: the URL is the credential
    assert fetched.status_code == 200 and fetched.content == archive
    assert f"{job_id}-model.tar.gz" in fetched.headers["content-disposition"]

    with serving(api.app) as base_url, Client(url=base_url, api_key=api.key) as client:
        out = client.jobs.download(job_id, tmp_path / "model")
        assert (out / "1_Pooling" / "config.json").read_text() == "r" * 5000
        monkeypatch.setattr(cli_remote, "api_client", lambda ctx: client)
        result = CliRunner().invoke(
            cli.main,
            ["jobs", "download", job_id, "--out", str(tmp_path / "cli"), "--no-extract"],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        assert (tmp_path / "cli" / f"{job_id}-model.tar.gz").read_bytes() == archive


# --- deletes -----------------------------------------------------------------------------------


def test_deletes_remove_the_objects(s3_api: Callable[..., S3Api]) -> None:
    api = s3_api()
    client = api.client()
    dataset = client.post("/datasets", files={"file": ("t.jsonl", triplet_rows(5000))}).json()
    key = f"datasets/{dataset['id']}.jsonl"
    cached = get_settings().scratch_dir / "cache" / key
    assert cached.is_file()
    job_id = succeeded_job_with_model(TEAM, model_archive())
    checkpoint = f"{job_prefix(job_id)}checkpoints/attempt-1/checkpoint-2/model.safetensors"
    with get_store().writer(checkpoint) as out:
        out.write(b"weights")
        out.commit()
    assert sorted(api.objects()) == sorted([key, model_key(job_id, 1), checkpoint])

    assert client.delete(f"/datasets/{dataset['id']}").status_code == 204
    assert not cached.exists()
    assert client.delete(f"/jobs/{job_id}").status_code == 204
    assert api.objects() == []


# --- the store down ----------------------------------------------------------------------------


@pytest.fixture
def own_s3(tmp_path: Path) -> Iterator[S3Server]:
    """An S3 server of this test alone, to stop."""
    server = S3Server(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_stopped_store_shows_on_health_and_uploads_answer_503(
    s3_api: Callable[..., S3Api], own_s3: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    api = s3_api(own_s3)
    client = api.client()
    health = client_for(api.app).get("/health")
    assert health.status_code == 200, health.text
    assert health.json()["storage"] == "ok"
    kept = client.post("/datasets", files={"file": ("t.jsonl", triplet_rows(5000))})
    assert kept.status_code == 201
    job_id = succeeded_job_with_model(TEAM, model_archive())

    own_s3.stop()
    started = time.monotonic()
    health = health_until(
        lambda: client_for(api.app).get("/health"), lambda r: r.status_code != 200
    )
    # Within the answer's age (EMBEDTUNE_HEALTH_CACHE_S, 1 s) and the store's own bound.
    assert time.monotonic() - started < 6.5
    assert health.status_code == 503
    body = health.json()
    assert (body["status"], body["database"], body["storage"]) == ("degraded", "ok", "unavailable")

    r = client.post("/datasets", files={"file": ("t.jsonl", triplet_rows(5000))})
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "storage_unavailable"
    assert r.headers["retry-after"]
    assert [d["id"] for d in client.get("/datasets").json()["data"]] == [kept.json()["id"]]
    assert not list((get_settings().scratch_dir / "uploads").iterdir())

    r = client.get(f"/jobs/{job_id}/model")
    assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable"

    # A delete still removes the records; the objects it could not remove are logged.
    with caplog.at_level(logging.WARNING, logger="app.jobs.deletion"):
        assert client.delete(f"/jobs/{job_id}").status_code == 204
    assert client.get(f"/jobs/{job_id}").status_code == 404
    with unit_of_work() as session:
        assert session.scalar(select(func.count()).where(JobEvent.job_id == job_id)) == 0
    assert any(job_id in m and "garbage" in m for m in caplog.messages), caplog.messages


def test_health_answers_within_seconds_when_the_store_never_answers(
    s3_api: Callable[..., S3Api],
) -> None:
    # A port that accepts connections (the kernel's backlog) but never answers a request.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        api = s3_api(endpoint_url=f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        health = client_for(api.app).get("/health")
        elapsed = time.monotonic() - started
        assert health.status_code == 503
        assert health.json()["storage"] == "unavailable"
        assert 3.5 < elapsed < 5.5, elapsed  # the store's time is bounded, not its timeouts
    finally:
        silent.close()
