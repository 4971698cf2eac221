"""The one interface for every byte the service keeps: datasets, checkpoints, model artifacts.

Keys are `/`-separated paths made by the service from its own ids (app.storage.keys), never from
client strings; `check_key` refuses anything else. Two backends implement it: a folder
(app.storage.files) and an S3-compatible bucket (app.storage.s3).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CHUNK_BYTES = 1024 * 1024
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")


class StorageError(Exception):
    """A store operation failed."""


class StorageUnavailable(StorageError):
    """The store cannot be reached or refuses the service (down, misconfigured, no bucket, no
    credentials). The message says which, without secrets."""


class ObjectMissing(StorageError):
    """No object under the key."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


def check_key(key: str) -> str:
    """`key` when it is a plain relative key (no `..`, no leading `/`, no odd characters)."""
    if not _KEY.fullmatch(key) or ".." in key.split("/"):
        raise ValueError(f"not a storage key: {key!r}")
    return key


class ObjectWriter(ABC):
    """An object being written piece by piece. It exists under its key only after `commit`;
    `abort` (or an exception inside a `with` block) leaves nothing behind."""

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def abort(self) -> None: ...

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()


class ObjectStore(ABC):
    """Where the service keeps its bytes. Every method raises StorageUnavailable when the
    store cannot be used, and reads raise ObjectMissing for an unknown key."""

    #: Where the store is, for logs and /health (no credentials).
    location: str

    @abstractmethod
    def writer(self, key: str) -> ObjectWriter:
        """Stream a new object (multipart on S3): nothing is visible until commit."""

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Store a local file under `key`, replacing any object there, atomically."""

    @abstractmethod
    def get_file(self, key: str, path: Path) -> None:
        """Copy the object to a local file (written to a temporary name, then renamed)."""

    @abstractmethod
    def iter_bytes(self, key: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The object's bytes, streamed in chunks (ObjectMissing before the first one)."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """The object's size, or None when there is none."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix` (a folder-like prefix ending in `/`)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; no error when there is none."""

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under `prefix`; how many were removed."""
        keys = [info.key for info in self.list(prefix)]
        for key in keys:
            self.delete(key)
        return len(keys)

    @abstractmethod
    def check(self) -> None:
        """Raise StorageUnavailable unless the store can be read and written."""

    def presigned_url(self, key: str, expires_s: int, filename: str) -> str | None:
        """A short-lived URL a client can GET the object from directly, or None when the
        backend has none (a folder)."""
        return None
