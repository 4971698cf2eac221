"""Downloading a fine-tuned model: streamed to disk, SHA-256 checked, then (optionally)
extracted. The API streams the archive itself, or (EMBEDTUNE_DOWNLOAD_REDIRECT on the server)
answers 307 to a presigned URL of its object store, which is followed here without the API
key: the key is for the API alone, and S3 refuses a request carrying two credentials."""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from embedtune_client.errors import ChecksumMismatch, raise_for_error
from embedtune_client.retry import send_with_retry

if TYPE_CHECKING:
    from embedtune_client.client import Client

CHUNK_BYTES = 1 << 20
REDIRECTS = frozenset({301, 302, 303, 307, 308})


def download_model(
    client: Client, job_id: str, dest: str | os.PathLike[str], *, extract: bool = True
) -> Path:
    """Download job `job_id`'s model into the folder `dest` (made if missing).

    The archive streams to a temporary file while its SHA-256 is computed, and is compared with
    the `X-Checksum-SHA256` header (else the job's `model.sha256`); a mismatch removes it and
    raises ChecksumMismatch. A redirect to the store is followed (once, without the API key).
    Then, with `extract`, the archive is unpacked into `dest` (refusing members that would land
    outside it) and `dest` is returned; without, the archive is kept as
    `dest/<job_id>-model.tar.gz` and that path is returned.
    """
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{job_id}-", suffix=".part", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        response = client.send(
            "GET", f"/jobs/{job_id}/model", stream=True, headers={"Accept": "application/gzip"}
        )
        expected = response.headers.get("X-Checksum-SHA256", "").strip().lower()
        if response.status_code in REDIRECTS and "Location" in response.headers:
            response.close()
            response = _from_store(client, str(response.url.join(response.headers["Location"])))
        try:
            raise_for_error(response)
            with tmp.open("wb") as out:
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
        finally:
            response.close()
        if not expected:
            job = client.jobs.get(job_id)
            expected = job.model.sha256.lower() if job.model else ""
        if digest.hexdigest() != expected:
            raise ChecksumMismatch(expected, digest.hexdigest())
        if not extract:
            archive = folder / f"{job_id}-model.tar.gz"
            tmp.replace(archive)
            return archive
        with tarfile.open(tmp, "r:gz") as tar:
            # The "data" filter refuses absolute paths, '..', links out of the folder and
            # device files.
            tar.extractall(folder, filter="data")
        return folder
    finally:
        tmp.unlink(missing_ok=True)


def _from_store(client: Client, url: str) -> httpx.Response:
    """GET the archive from the store's presigned `url` (streamed): through the client's own
    HTTP client and retries, but without its API key, nor any header the store has no use
    for."""

    def attempt() -> httpx.Response:
        request = client.http.build_request("GET", url)
        # An httpx.Client may carry default headers (a key set on it): never to the store.
        for name in ("Authorization", "Idempotency-Key"):
            request.headers.pop(name, None)
        return client.http.send(request, stream=True)

    return send_with_retry(attempt, client.retry, idempotent=True)
