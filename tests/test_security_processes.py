"""Issue 9's classes against the real `embedtune api` process (uvicorn, SQLite, a folder broker):
huge unauthenticated bodies over a raw socket, keys in the access log, and one team's slow
uploads beside /health and another team's requests."""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support.services import (
    Process,
    auth_headers,
    base_env,
    create_api_key,
    free_port,
    python_cli,
    wait_healthy,
)
from tests.support.tiny_model import SHARED_DATA, read_jsonl

MB = 1024 * 1024
ADMIN_TOKEN = "sec-admin-" + secrets.token_hex(12)
ROWS = read_jsonl(SHARED_DATA / "snli_dev_triplets.jsonl", limit=40)


@dataclass
class Api:
    url: str
    port: int
    process: Process
    keys: dict[str, str]

    def rss(self) -> int:
        return int(psutil.Process(self.process.proc.pid).memory_info().rss)

    def client(self, team: str | None = None) -> httpx.Client:
        headers = auth_headers(self.keys[team]) if team else None
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data_dir = tmp_path_factory.mktemp("security-api")
    env = base_env(
        data_dir=str(data_dir),
        broker_url=f"filesystem://{data_dir / 'broker'}",
        admin_token=ADMIN_TOKEN,
        uploads_per_team="2",
    )
    import subprocess

    subprocess.run(python_cli("migrate"), env=env, check=True, capture_output=True)
    keys = {team: create_api_key(env, team) for team in ("red", "blue")}
    port = free_port()
    process = Process("api-security", python_cli("api", "--port", str(port)), env, data_dir)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", [process])
        yield Api(f"http://127.0.0.1:{port}", port, process, keys)
    finally:
        process.stop()


def _raw_post(port: int, headers: str, body_chunks: Iterator[bytes]) -> tuple[int, float]:
    """Send a request's headers and some body over a socket; (status, seconds to the answer)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(headers.encode())
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and closed without reading: what is tested
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    return int(answer.split(b" ", 2)[1]), time.monotonic() - started


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("path", ["/jobs", "/datasets", "/admin/teams"])
def test_a_huge_unauthenticated_body_costs_the_api_nothing(api: Api, chunked: bool, path) -> None:
    before = api.rss()
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {300 * MB}"
    headers = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{length}\r\n"
        "Authorization: Bearer et_00000000_not-a-key-not-a-key-not-a-key-not-a-key\r\n\r\n"
    )
    piece = b"[" + b"1," * (MB // 2)
    chunks = (
        (f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece) for _ in range(8)
    )
    status, seconds = _raw_post(api.port, headers, chunks)
    assert status == 401
    assert seconds < 10
    assert api.rss() - before < 30 * MB


def test_keys_and_the_admin_token_never_reach_the_log(api: Api) -> None:
    key = api.keys["red"]
    secret = key.split("_", 2)[2]
    with api.client("red") as red:
        assert red.get("/jobs", params={"api_key": key}).status_code == 401
        assert red.get("/datasets", params={"token": ADMIN_TOKEN}).status_code == 401
    with httpx.Client(base_url=api.url, headers=auth_headers(ADMIN_TOKEN), timeout=30) as admin:
        assert admin.post(f"/admin/keys/{key}/revoke").status_code == 422
    time.sleep(0.5)  # the access log is written after the response
    log = api.process.log_tail(200_000)
    assert "/jobs?api_key=" in log and "/admin/keys/" in log  # the requests were logged...
    assert secret not in log and ADMIN_TOKEN not in log  # ...without the secrets
    with api.client("red") as red:
        assert red.get("/jobs").status_code == 200  # the key still works (nothing revoked)


def _multipart_slowly(
    rows: list[dict[str, Any]], pause_s: float, boundary: str
) -> Iterator[bytes]:
    yield (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.jsonl\""
        "\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode()
    for row in rows:
        time.sleep(pause_s)
        yield (json.dumps(row) + "\n").encode()
    yield f"\r\n--{boundary}--\r\n".encode()


def test_slow_uploads_of_one_team_starve_nobody(api: Api) -> None:
    boundary = "b" + secrets.token_hex(8)
    results: list[int] = []

    def slow_upload() -> None:
        with api.client("red") as red:
            r = red.post(
                "/datasets",
                content=_multipart_slowly(ROWS, 0.1, boundary),
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            )
            results.append(r.status_code)

    threads = [threading.Thread(target=slow_upload) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # both are streaming now
    try:
        with api.client("red") as red:
            r = red.post("/datasets", files={"file": ("t.jsonl", b'{"anchor":"a"}\n')})
            assert r.status_code == 429, r.text
            assert r.json()["error"]["code"] == "too_many_uploads"
            assert int(r.headers["retry-after"]) > 0
        started = time.monotonic()
        with httpx.Client(base_url=api.url, timeout=10) as anyone:
            assert anyone.get("/health").status_code == 200
        assert time.monotonic() - started < 2
        body = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
        with api.client("blue") as blue:
            assert blue.post("/datasets", files={"file": ("t.jsonl", body)}).status_code == 201
            assert blue.get("/jobs").status_code == 200
    finally:
        for t in threads:
            t.join(timeout=60)
    assert results == [201, 201]
    with api.client("red") as red:  # the slots were given back
        r = red.post("/datasets", files={"file": ("t.jsonl", body)})
        assert r.status_code == 201, r.text


def test_stored_files_are_private(api: Api) -> None:
    body = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    with api.client("blue") as blue:
        dataset = blue.post("/datasets", files={"file": ("t.jsonl", body)})
        assert dataset.status_code == 201, dataset.text
    data_dir = Path(api.process.log_path).parent
    stored = data_dir / "datasets" / f"{dataset.json()['id']}.jsonl"
    for path in (stored, stored.parent, data_dir / "embedtune.db"):
        assert path.stat().st_mode & 0o077 == 0, path
