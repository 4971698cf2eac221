"""GET /jobs/{id}/model in-process, on the default folder store: streamed with Content-Length,
Content-Disposition and X-Checksum-SHA256, HEAD without the body, the legacy key of jobs from
before attempt-scoped keys, 404 artifact_missing, team isolation, and a folder store streaming
even with EMBEDTUNE_DOWNLOAD_REDIRECT=1. The client follows a redirect to the store without
the API key. The redirect itself, to a real S3 server: tests/test_storage_api.py."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from embedtune_client import ChecksumMismatch, Client
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.db.session import unit_of_work
from app.jobs.models import Job
from app.storage import get_store, legacy_model_key, model_key
from tests.fast.conftest import client_for
from tests.fast.test_stream import make_job, start, succeed


def model_archive(marker: str = "x") -> bytes:
    """A small model archive (a tar.gz as the worker writes, with a few files)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in (("modules.json", "[]"), ("1_Pooling/config.json", marker * 5000)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def succeeded_job_with_model(team: str, archive: bytes, *, legacy: bool = False) -> str:
    """A succeeded job of team `team` whose model is `archive`, in the app's store: under its
    attempt's key recorded in jobs.model_key, or (legacy) where jobs from before 0010 kept
    it, with no model_key."""
    job_id = make_job(team)
    start(job_id)
    succeed(job_id)
    key = legacy_model_key(job_id) if legacy else model_key(job_id, 1)
    with get_store().writer(key) as out:
        out.write(archive)
        out.commit()
    with unit_of_work() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                model_key=None if legacy else key,
                model_sha256=hashlib.sha256(archive).hexdigest(),
                model_size_bytes=len(archive),
            )
        )
    return job_id


def assert_streamed(r: Any, job_id: str, archive: bytes) -> None:
    assert r.status_code == 200, r.text
    assert r.content == archive
    assert r.headers["content-type"] == "application/gzip"
    assert r.headers["content-length"] == str(len(archive))
    assert r.headers["x-checksum-sha256"] == hashlib.sha256(archive).hexdigest()
    assert r.headers["content-disposition"] == f'attachment; filename="{job_id}-model.tar.gz"'


@pytest.mark.parametrize("legacy", [False, True], ids=["attempt-key", "legacy-key"])
def test_the_model_streams_from_the_store_with_its_headers(
    team_client: Callable[[str], TestClient], legacy: bool
) -> None:
    client = team_client("alpha")
    archive = model_archive()
    job_id = succeeded_job_with_model("alpha", archive, legacy=legacy)
    assert_streamed(client.get(f"/jobs/{job_id}/model"), job_id, archive)

    head = client.head(f"/jobs/{job_id}/model")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(archive))
    assert head.headers["x-checksum-sha256"] == hashlib.sha256(archive).hexdigest()


def test_a_folder_store_streams_even_in_redirect_mode(app_with, make_key) -> None:  # type: ignore[no-untyped-def]
    client = client_for(app_with(DOWNLOAD_REDIRECT="1"), make_key("alpha"))
    archive = model_archive()
    job_id = succeeded_job_with_model("alpha", archive)
    r = client.get(f"/jobs/{job_id}/model", follow_redirects=False)
    assert_streamed(r, job_id, archive)


def test_missing_model_unknown_job_other_team_and_unfinished_job(
    team_client: Callable[[str], TestClient],
) -> None:
    client = team_client("alpha")
    job_id = succeeded_job_with_model("alpha", model_archive())
    get_store().delete(model_key(job_id, 1))
    r = client.get(f"/jobs/{job_id}/model")
    assert r.status_code == 404 and r.json()["error"]["code"] == "artifact_missing"

    other = succeeded_job_with_model("beta", model_archive())
    for job in (other, "job_" + "0" * 24):
        r = client.get(f"/jobs/{job}/model")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    assert team_client("beta").get(f"/jobs/{other}/model").status_code == 200

    queued = make_job("alpha")
    r = client.get(f"/jobs/{queued}/model")
    assert r.status_code == 409 and r.json()["error"]["code"] == "model_not_ready"


def test_the_client_downloads_and_extracts_through_the_api(app, make_key, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    archive = model_archive("m")
    job_id = succeeded_job_with_model("alpha", archive)
    api = Client(url="http://testserver", api_key=make_key("alpha"), http=client_for(app))
    out = api.jobs.download(job_id, tmp_path / "model")
    assert (out / "modules.json").read_text() == "[]"
    assert (out / "1_Pooling" / "config.json").read_text() == "m" * 5000


# --- the client and a redirect to the store ----------------------------------------------------

STORE_URL = "http://store.example:9000/bucket/jobs/job_1/attempt-1/model.tar.gz?X-Amz-Signature=s"


def _redirecting(archive: bytes, announced: str, seen: list[httpx.Request]) -> Client:
    """A Client whose API answers 307 to the store, as EMBEDTUNE_DOWNLOAD_REDIRECT=1 does."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "api":
            headers = {"Location": STORE_URL, "X-Checksum-SHA256": announced}
            return httpx.Response(307, headers=headers)
        # The store serves the object without the header (the API announced it).
        return httpx.Response(200, content=archive, headers={"Content-Type": "application/gzip"})

    return Client(url="http://api", api_key="et_secret", transport=httpx.MockTransport(handler))


def test_the_client_follows_the_redirect_without_the_api_key(tmp_path: Path) -> None:
    archive = model_archive()
    seen: list[httpx.Request] = []
    api = _redirecting(archive, hashlib.sha256(archive).hexdigest(), seen)
    path = api.jobs.download("job_1", tmp_path, extract=False)
    assert path.read_bytes() == archive
    to_api, to_store = seen
    assert to_api.headers["authorization"] == "Bearer et_secret"
    assert str(to_store.url) == STORE_URL
    assert "authorization" not in to_store.headers


def test_a_redirected_download_is_checked_against_the_apis_checksum(tmp_path: Path) -> None:
    archive = model_archive()
    seen: list[httpx.Request] = []
    api = _redirecting(archive, "0" * 64, seen)
    with pytest.raises(ChecksumMismatch):
        api.jobs.download("job_1", tmp_path / "model")
    assert list((tmp_path / "model").iterdir()) == []
