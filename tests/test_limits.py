"""Per-team limits at their edges, against a real API process started with tight limits.

Just under (or at) a limit passes, just over fails with its status: 413 for upload bytes (with
and without Content-Length), 422 dataset_too_large for rows, 429 too_many_active_jobs with
Retry-After for queued + running jobs, 422 limit_exceeded for hyperparameter bounds. No worker
runs here: created jobs stay queued, which is what the active-job limit counts.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.limits import FORM_OVERHEAD_BYTES, limits_for
from app.settings import Settings
from tests.conftest import REDIS_URL, TINY_MODEL, _postgres_database
from tests.support.services import (
    Process,
    auth_headers,
    base_env,
    create_api_key,
    free_port,
    python_cli,
    wait_healthy,
)

MAX_UPLOAD_BYTES = 4000
MAX_ROWS = 20
MAX_ACTIVE_JOBS = 2
BOUNDS = {"epochs": 3, "max_steps": 50, "batch_size": 8, "max_seq_length": 64}
BOUND_SETTINGS = {"epochs": "max_epochs", "max_steps": "max_steps"}
BOUND_SETTINGS |= {"batch_size": "max_batch_size", "max_seq_length": "max_seq_length"}


@dataclass
class LimitedApi:
    base_url: str
    env: dict[str, str]
    data_dir: Path
    api: Process

    def client(self, team: str) -> httpx.Client:
        """A client of `team` (made with its API key): the one place requests get their auth."""
        key = create_api_key(self.env, team)
        return httpx.Client(base_url=self.base_url, timeout=60, headers=auth_headers(key))

    def files(self, folder: str) -> set[str]:
        path = self.data_dir / folder
        return {p.name for p in path.iterdir()} if path.is_dir() else set()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, model_root: Path) -> Iterator[LimitedApi]:
    """An API process (no worker) on a fresh PostgreSQL database, with tight limits."""
    data_dir = tmp_path_factory.mktemp("limits-data")
    for database_url in _postgres_database():
        env = base_env(
            database_url=database_url,
            broker_url=REDIS_URL,
            queue=f"embedtune-limits-{secrets.token_hex(4)}",  # no worker reads it
            data_dir=str(data_dir),
            model_dirs=str(model_root),
            max_upload_bytes=str(MAX_UPLOAD_BYTES),
            max_dataset_rows=str(MAX_ROWS),
            max_active_jobs=str(MAX_ACTIVE_JOBS),
            **{setting: str(BOUNDS[field]) for field, setting in BOUND_SETTINGS.items()},
        )
        subprocess.run(python_cli("migrate"), env=env, check=True, capture_output=True)
        port = free_port()
        api = Process("api-limits", python_cli("api", "--port", str(port)), env, data_dir)
        try:
            wait_healthy(f"http://127.0.0.1:{port}", [api])
            yield LimitedApi(f"http://127.0.0.1:{port}", env, data_dir, api)
        finally:
            api.stop()


@pytest.fixture(scope="module")
def client(limited: LimitedApi) -> Iterator[httpx.Client]:
    with limited.client("limits") as c:
        yield c


def _rows(count: int, size: int | None = None) -> bytes:
    """`count` distinct JSONL triplets; with `size`, padded to exactly `size` bytes."""
    lines = [
        json.dumps({"anchor": f"anchor {i}", "positive": f"positive {i}", "negative": f"neg {i}"})
        for i in range(count)
    ]
    if size is not None:
        pad, extra = divmod(size - sum(len(line) + 1 for line in lines), count)
        assert pad >= 0, "rows do not fit"
        lines = [line[:-2] + " " * (pad + (i < extra)) + line[-2:] for i, line in enumerate(lines)]
    body = "".join(line + "\n" for line in lines).encode()
    assert size is None or len(body) == size
    return body


BOUNDARY = "limits-test-7f3c"


def _multipart(content: bytes, filename: str = "data.jsonl", **fields: str) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def _upload(client: httpx.Client, content: bytes, *, chunked: bool = False) -> httpx.Response:
    """POST /datasets; `chunked` streams the body without a Content-Length."""
    if not chunked:
        return client.post("/datasets", files={"file": ("data.jsonl", content)})
    body = _multipart(content, name="chunked")

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    r = client.post(
        "/datasets",
        content=chunks(),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert "content-length" not in r.request.headers
    assert r.request.headers["transfer-encoding"] == "chunked"
    return r


def _assert_413_left_nothing(limited: LimitedApi, r: httpx.Response, before: set[str]) -> None:
    assert r.status_code == 413, r.text
    error = r.json()["error"]
    assert error["code"] == "payload_too_large"
    assert error["details"] == {"limit_bytes": MAX_UPLOAD_BYTES}
    assert "EMBEDTUNE_MAX_UPLOAD_BYTES" in error["message"]
    assert limited.files("scratch/uploads") == set()
    assert limited.files("datasets") == before


# --------------------------------------------------------------------------------------------
# Upload size


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_upload_of_exactly_the_limit_passes_and_one_byte_more_is_413(
    limited: LimitedApi, client: httpx.Client, chunked: bool
) -> None:
    exact = _rows(MAX_ROWS, size=MAX_UPLOAD_BYTES)
    r = _upload(client, exact, chunked=chunked)
    assert r.status_code == 201, r.text
    assert r.json()["size_bytes"] == MAX_UPLOAD_BYTES
    assert limited.files("scratch/uploads") == set()

    before = limited.files("datasets")
    r = _upload(client, exact + b"\n", chunked=chunked)  # one blank line more: 1 byte
    _assert_413_left_nothing(limited, r, before)


def test_declared_content_length_over_the_limit_is_413(
    limited: LimitedApi, client: httpx.Client
) -> None:
    before = limited.files("datasets")
    # Refused by its Content-Length: the file alone is within the limit plus form overhead.
    big = b"x" * (MAX_UPLOAD_BYTES + FORM_OVERHEAD_BYTES + 1)
    r = client.post("/datasets", files={"file": ("big.jsonl", big)})
    _assert_413_left_nothing(limited, r, before)


def test_chunked_upload_far_over_the_limit_stops_early(
    limited: LimitedApi, client: httpx.Client
) -> None:
    before = limited.files("datasets")
    r = _upload(client, _rows(1) * 20_000, chunked=True)  # ~1.3 MB, 330x the limit
    _assert_413_left_nothing(limited, r, before)


# --------------------------------------------------------------------------------------------
# Rows per dataset


def test_rows_at_the_limit_pass_and_one_more_is_422(
    limited: LimitedApi, client: httpx.Client
) -> None:
    r = _upload(client, _rows(MAX_ROWS))
    assert r.status_code == 201, r.text
    assert r.json()["rows"] == MAX_ROWS

    before = limited.files("datasets")
    r = _upload(client, _rows(MAX_ROWS + 1))
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "dataset_too_large"
    assert error["details"] == {
        "field": "file",
        "line": MAX_ROWS + 1,
        "row": MAX_ROWS + 1,
        "max_rows": MAX_ROWS,
    }
    assert "EMBEDTUNE_MAX_DATASET_ROWS" in error["message"]
    assert limited.files("datasets") == before
    assert limited.files("scratch/uploads") == set()


# --------------------------------------------------------------------------------------------
# Hyperparameter bounds and active jobs


def _train_dataset(client: httpx.Client) -> str:
    r = _upload(client, _rows(MAX_ROWS))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _job(dataset: str, **hyperparameters: int) -> dict:
    # batch_size: the default (16) is over this server's limit
    hyperparameters = {"batch_size": BOUNDS["batch_size"], **hyperparameters}
    return {"base_model": TINY_MODEL, "train_dataset": dataset, "hyperparameters": hyperparameters}


def _cancel(client: httpx.Client, job_id: str) -> None:
    assert client.post(f"/jobs/{job_id}/cancel").status_code == 202


def test_hyperparameters_at_their_limits_pass(client: httpx.Client) -> None:
    r = client.post("/jobs", json=_job(_train_dataset(client), **BOUNDS))
    assert r.status_code == 202, r.text
    _cancel(client, r.json()["id"])  # frees its active-job slot


@pytest.mark.parametrize("field", sorted(BOUNDS))
def test_a_hyperparameter_over_its_limit_is_422(client: httpx.Client, field: str) -> None:
    over = {**BOUNDS, field: BOUNDS[field] + 1}
    r = client.post("/jobs", json=_job(_train_dataset(client), **over))
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "limit_exceeded"
    assert error["details"] == {
        "field": f"hyperparameters.{field}",
        "max": BOUNDS[field],
        "got": BOUNDS[field] + 1,
    }
    assert f"EMBEDTUNE_{BOUND_SETTINGS[field].upper()}" in error["message"]


def test_a_default_over_the_limit_is_422_and_says_so(client: httpx.Client) -> None:
    body = _job(_train_dataset(client))
    del body["hyperparameters"]["batch_size"]  # the schema's default, 16
    r = client.post("/jobs", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"]["field"] == "hyperparameters.batch_size"
    assert "the default 16" in r.json()["error"]["message"]


def test_active_jobs_at_the_limit_get_429_with_retry_after(limited: LimitedApi) -> None:
    with limited.client("busy") as busy, limited.client("idle") as idle:
        dataset = _train_dataset(busy)
        jobs = []
        for _ in range(MAX_ACTIVE_JOBS):
            r = busy.post("/jobs", json=_job(dataset))
            assert r.status_code == 202, r.text
            jobs.append(r.json()["id"])

        r = busy.post("/jobs", json=_job(dataset))
        assert r.status_code == 429, r.text
        assert int(r.headers["retry-after"]) > 0
        error = r.json()["error"]
        assert error["code"] == "too_many_active_jobs"
        assert error["details"] == {"active_jobs": MAX_ACTIVE_JOBS, "max": MAX_ACTIVE_JOBS}
        assert "cancel" in error["message"]
        assert "EMBEDTUNE_MAX_ACTIVE_JOBS" in error["message"]

        # Another team's jobs are not counted against it.
        r = idle.post("/jobs", json=_job(_train_dataset(idle)))
        assert r.status_code == 202, r.text

        # A finished (here: cancelled) job frees its slot.
        _cancel(busy, jobs[0])
        r = busy.post("/jobs", json=_job(dataset))
        assert r.status_code == 202, r.text


# --------------------------------------------------------------------------------------------
# limits_for: settings, with a team's overrides on top


def test_team_overrides_replace_settings_within_the_caps() -> None:
    settings = Settings(max_active_jobs=10, max_batch_size=64, max_epochs=5)
    limits = limits_for(
        settings,
        {"max_active_jobs": 50, "max_epochs": 1000, "max_batch_size": 16, "unknown": 3},
    )
    assert limits.max_active_jobs == 50  # raised for this team
    assert limits.max_batch_size == 16  # lowered for this team
    assert limits.max_epochs == 100  # never past the schema's cap
    assert limits.max_upload_bytes == settings.max_upload_bytes

    ignored = limits_for(settings, {"max_active_jobs": 0, "max_epochs": "7", "max_steps": True})
    assert ignored == limits_for(settings, None)
