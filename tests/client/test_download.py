"""Model downloads: streamed, SHA-256 checked against the API's header, then extracted."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import httpx
import pytest
from embedtune_client import ChecksumMismatch, Client


def _archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in (("modules.json", "[]"), ("1_Pooling/config.json", "{}")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _client(content: bytes, sha256: str) -> Client:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/jobs/job_1/model"
        headers = {"Content-Type": "application/gzip", "X-Checksum-SHA256": sha256}
        return httpx.Response(200, content=content, headers=headers)

    return Client(url="http://api", api_key="k", transport=httpx.MockTransport(handler))


def test_download_extracts_a_verified_archive(tmp_path: Path) -> None:
    content = _archive()
    out = tmp_path / "model"
    assert _client(content, hashlib.sha256(content).hexdigest()).jobs.download("job_1", out) == out
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "1_Pooling/config.json",
        "modules.json",
    ]


def test_download_without_extracting_keeps_the_archive(tmp_path: Path) -> None:
    content = _archive()
    api = _client(content, hashlib.sha256(content).hexdigest())
    path = api.jobs.download("job_1", tmp_path, extract=False)
    assert path == tmp_path / "job_1-model.tar.gz"
    assert path.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_tampered_download_is_refused_and_removed(tmp_path: Path) -> None:
    content = _archive()
    announced = hashlib.sha256(content).hexdigest()
    tampered = content[:-1] + bytes([content[-1] ^ 1])
    with pytest.raises(ChecksumMismatch) as caught:
        _client(tampered, announced).jobs.download("job_1", tmp_path / "model")
    assert caught.value.expected == announced
    assert list((tmp_path / "model").iterdir()) == []  # no partial file, nothing extracted
