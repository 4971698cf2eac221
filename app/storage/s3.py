"""A store in an S3-compatible bucket: `s3://bucket[/prefix]` (AWS S3, MinIO, Ceph RGW, R2).

boto3 does the protocol: credentials and region come from the standard AWS environment
variables and credential chain, `EMBEDTUNE_S3_ENDPOINT_URL` points it at a non-AWS endpoint.
Large objects go up as multipart uploads and come down streamed; no object is held in memory
whole (a writer holds at most PARTS_IN_FLIGHT parts being sent and one being filled).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.storage.base import (
    CHUNK_BYTES,
    ObjectInfo,
    ObjectMissing,
    ObjectStore,
    ObjectWriter,
    StorageError,
    StorageUnavailable,
    check_key,
)

# S3's smallest part (but the last) is 5 MiB; 8 MiB parts keep a writer's memory small.
PART_BYTES = 8 * 1024 * 1024
_TRANSFER = TransferConfig(
    multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=4
)
# Parts a writer sends at once, as boto3's own transfers do: one part at a time leaves the
# connection idle between round trips, and a model upload then runs at a fraction of the
# link's speed (bench/finish_time.py).
PARTS_IN_FLIGHT = 4
_MISSING = {"404", "NoSuchKey", "NotFound"}
T = TypeVar("T")


def _client_error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store(ObjectStore):
    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        where = f" at {endpoint_url}" if endpoint_url else ""
        self.location = f"s3://{bucket}/{self.prefix}".rstrip("/") + where
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            config=Config(
                connect_timeout=3,
                read_timeout=30,
                # botocore's own retries with backoff for throttling and transient errors.
                retries={"max_attempts": 3, "mode": "standard"},
                signature_version="s3v4",
                s3={"addressing_style": "path" if endpoint_url else "auto"},
            ),
        )

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _unkey(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def _call(self, what: str, key: str | None, fn: Callable[[], T]) -> T:
        """Run one S3 call, its failures as the store's errors."""
        try:
            return fn()
        except ClientError as exc:
            code = _client_error_code(exc)
            if code in _MISSING and key is not None:
                raise ObjectMissing(key) from exc
            raise StorageUnavailable(
                f"the object store {self.location} refused {what}: {code or exc}"
            ) from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(
                f"the object store {self.location} is unreachable ({what}): {type(exc).__name__}"
            ) from exc

    def writer(self, key: str) -> ObjectWriter:
        return _MultipartWriter(self, self._key(key))

    def put_file(self, key: str, path: Path) -> None:
        full = self._key(key)
        self._call(
            "an upload",
            None,
            lambda: self.client.upload_file(str(path), self.bucket, full, Config=_TRANSFER),
        )

    def get_file(self, key: str, path: Path) -> None:
        full = self._key(key)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
        try:
            self._call(
                "a download",
                key,
                lambda: self.client.download_file(self.bucket, full, name, Config=_TRANSFER),
            )
            os.replace(name, path)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise

    def iter_bytes(self, key: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        full = self._key(key)
        body = self._call(
            "a read", key, lambda: self.client.get_object(Bucket=self.bucket, Key=full)["Body"]
        )
        return self._stream(body, chunk_bytes)

    def _stream(self, body: Any, chunk_bytes: int) -> Iterator[bytes]:
        try:
            while chunk := self._call("a read", None, lambda: body.read(chunk_bytes)):
                yield chunk
        finally:
            body.close()

    def head(self, key: str) -> ObjectInfo | None:
        full = self._key(key)
        try:
            meta = self._call(
                "a lookup", key, lambda: self.client.head_object(Bucket=self.bucket, Key=full)
            )
        except ObjectMissing:
            return None
        return ObjectInfo(key, int(meta["ContentLength"]))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        full = self._key(prefix.rstrip("/")) + ("/" if prefix.endswith("/") else "")
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full
        )
        for page in self._call("a listing", None, lambda: list(pages)):
            for item in page.get("Contents", []):
                yield ObjectInfo(self._unkey(item["Key"]), int(item["Size"]))

    def delete(self, key: str) -> None:
        full = self._key(key)
        self._call(
            "a delete", None, lambda: self.client.delete_object(Bucket=self.bucket, Key=full)
        )

    def delete_prefix(self, prefix: str) -> int:
        keys = [self._key(info.key) for info in self.list(prefix)]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self._call(
                "a delete",
                None,
                lambda batch=batch: self.client.delete_objects(  # type: ignore[misc]
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                ),
            )
        return len(keys)

    def check(self) -> None:
        bucket = self.bucket
        self._call("access to its bucket", None, lambda: self.client.head_bucket(Bucket=bucket))

    def presigned_url(self, key: str, expires_s: int, filename: str) -> str | None:
        full = self._key(key)
        return str(
            self._call(
                "a presigned URL",
                None,
                lambda: self.client.generate_presigned_url(
                    "get_object",
                    Params={
                        "Bucket": self.bucket,
                        "Key": full,
                        "ResponseContentDisposition": f'attachment; filename="{filename}"',
                    },
                    ExpiresIn=expires_s,
                ),
            )
        )


class _MultipartWriter(ObjectWriter):
    """Buffers up to one part; a small object is one PUT, a larger one a multipart upload that
    `abort` cancels (so a rejected upload leaves no object and no parts). Up to
    PARTS_IN_FLIGHT parts are sent at once, in threads; `write` waits for the oldest when that
    many are on their way, so memory stays bounded whatever the caller's speed."""

    def __init__(self, store: S3Store, full_key: str) -> None:
        self._store = store
        self._key = full_key
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._sending: deque[Future[dict[str, Any]]] = deque()
        self._pool: ThreadPoolExecutor | None = None
        self._done = False

    def write(self, data: bytes) -> None:
        assert not self._done, "written after commit or abort"
        self._buffer += data
        while len(self._buffer) >= PART_BYTES:
            part = bytes(self._buffer[:PART_BYTES])
            del self._buffer[:PART_BYTES]
            self._send_part(part)

    def _send_part(self, data: bytes) -> None:
        store, client = self._store, self._store.client
        if self._upload_id is None:
            created = store._call(
                "an upload",
                None,
                lambda: client.create_multipart_upload(Bucket=store.bucket, Key=self._key),
            )
            self._upload_id = str(created["UploadId"])
            self._pool = ThreadPoolExecutor(PARTS_IN_FLIGHT, thread_name_prefix="s3-part")
        while len(self._sending) >= PARTS_IN_FLIGHT:
            self._parts.append(self._sending.popleft().result())  # raises the part's error
        number = len(self._parts) + len(self._sending) + 1
        upload_id = self._upload_id
        assert self._pool is not None

        def send() -> dict[str, Any]:
            answer = store._call(
                "an upload",
                None,
                lambda: client.upload_part(
                    Bucket=store.bucket,
                    Key=self._key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data,
                ),
            )
            return {"ETag": answer["ETag"], "PartNumber": number}

        self._sending.append(self._pool.submit(send))

    def _sent(self) -> None:
        """Wait for every part on its way; the first failure is raised."""
        while self._sending:
            self._parts.append(self._sending.popleft().result())

    def _stop_sending(self) -> None:
        for future in self._sending:
            future.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)  # no part may land after the abort below
            self._pool = None
        self._sending.clear()

    def commit(self) -> None:
        assert not self._done, "committed twice"
        store, client = self._store, self._store.client
        try:
            if self._upload_id is None:
                body = bytes(self._buffer)
                store._call(
                    "an upload",
                    None,
                    lambda: client.put_object(Bucket=store.bucket, Key=self._key, Body=body),
                )
            else:
                if self._buffer:
                    self._send_part(bytes(self._buffer))
                self._sent()
                self._stop_sending()
                upload_id = self._upload_id
                store._call(
                    "an upload",
                    None,
                    lambda: client.complete_multipart_upload(
                        Bucket=store.bucket,
                        Key=self._key,
                        UploadId=upload_id,
                        MultipartUpload={"Parts": self._parts},
                    ),
                )
        except BaseException:
            self.abort()
            raise
        self._done = True
        self._buffer.clear()

    def abort(self) -> None:
        self._done = True
        self._buffer.clear()
        self._stop_sending()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            store = self._store
            # A bucket lifecycle rule for incomplete uploads is the backstop (README).
            with contextlib.suppress(StorageError):
                store._call(
                    "an abort",
                    None,
                    lambda: store.client.abort_multipart_upload(
                        Bucket=store.bucket, Key=self._key, UploadId=upload_id
                    ),
                )
