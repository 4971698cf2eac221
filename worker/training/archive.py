"""Packing a saved model folder into a .tar.gz for download.

The archive is a gzip stream at level 0 (deflate's stored blocks): still a `.tar.gz` that
`tar -xzf`, Python's tarfile and every gzip reader take, but written at the speed of a copy.
Safetensors weights are float bits that deflate shrinks by under a tenth, and at level 9 it cost
about 11 MB/s on one core, longer than a small training run (issue 12); level 0 keeps the
minutes after training to well under a second a GB. The bytes go to any writable sink in one
pass, hashed on the way, so the worker streams the archive straight into the object store's
writer with no temporary file and no second read for the checksum.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import queue
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_CHUNK = 1024 * 1024
# Chunks (of about _CHUNK) waiting for the writer thread: bounds the memory an archive takes.
_QUEUED = 8
# Stored blocks: gzip framing and CRC, no compression (see the module docstring).
COMPRESS_LEVEL = 0


class Sink(Protocol):
    """Where the archive's bytes go: a file, an object store's writer."""

    def write(self, data: bytes) -> object: ...


@dataclass(frozen=True)
class ArchiveInfo:
    size_bytes: int
    sha256: str


class _Counted:
    """Hashes and forwards the archive's bytes to `sink` on a thread of its own, keeping their
    size and sha256: hashing and the sink's writes (disk, network) overlap with reading and
    framing the next chunks on the caller's thread (hashlib, zlib and file and socket writes
    release the GIL on large buffers). Its first failure is raised to the caller's next write,
    or by `close`."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self.size = 0
        self.digest = hashlib.sha256()
        self._error: BaseException | None = None
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUED)
        self._thread = threading.Thread(target=self._drain, name="archive-writer", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> int:
        if self._error is not None:
            raise self._error
        if data:
            self._queue.put(data)
        return len(data)

    def flush(self) -> None:
        """GzipFile flushes its file object on close; `close` is what waits for the sink."""

    def _drain(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep taking chunks, so the caller never blocks on a full queue
            try:
                self._sink.write(data)
                self.digest.update(data)
                self.size += len(data)
            except BaseException as exc:
                self._error = exc

    def close(self, raise_error: bool = True) -> None:
        """Wait until every chunk reached the sink; raise the thread's failure, if any."""
        self._queue.put(None)
        self._thread.join()
        if raise_error and self._error is not None:
            raise self._error


def write_archive(model_dir: Path, sink: Sink) -> ArchiveInfo:
    """Write `model_dir`'s contents to `sink` as a gzip tar; the size and sha256 of the bytes
    written.

    The archive's top level is the folder's contents, not the folder itself: extracting it into
    an empty directory gives the sentence-transformers model folder directly. Members are in name
    order with the modes a downloader expects (see _portable), and the gzip header carries no
    name or time, so the same folder gives the same bytes. Nothing is committed here: a sink that
    is an ObjectWriter is committed (or aborted) by the caller.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise NotADirectoryError(f"not a model folder: {model_dir}")
    counted = _Counted(sink)
    try:
        with (
            gzip.GzipFile(
                filename="", mode="wb", compresslevel=COMPRESS_LEVEL, fileobj=counted, mtime=0
            ) as gz,
            # Larger copies than tarfile's 16 KiB default: fewer trips through gzip and the sink.
            tarfile.TarFile(fileobj=gz, mode="w", copybufsize=_CHUNK) as tar,  # type: ignore[arg-type]
        ):
            for child in sorted(model_dir.iterdir()):
                tar.add(child, arcname=child.name, recursive=True, filter=_portable)
    except BaseException:
        counted.close(raise_error=False)  # the first failure is the one to report
        raise
    counted.close()
    return ArchiveInfo(size_bytes=counted.size, sha256=counted.digest.hexdigest())


def make_archive(model_dir: Path, archive_path: Path) -> ArchiveInfo:
    """write_archive into a local file at `archive_path`, atomically (a temporary file next to
    it, renamed into place: readers never see a partial file), private to the service user."""
    model_dir = Path(model_dir)
    archive_path = Path(archive_path)
    if not model_dir.is_dir():
        raise NotADirectoryError(f"not a model folder: {model_dir}")
    archive_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{archive_path.name}.", suffix=".tmp", dir=archive_path.parent
    )
    tmp_path = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            info = write_archive(model_dir, raw)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp_path, 0o600)  # at rest it is the service user's; the API serves it
        os.replace(tmp_path, archive_path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return info


def _portable(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """Members as a downloader expects them, whatever the worker's umask made on disk: files
    0644, folders 0755, no owner of the worker's."""
    member.mode = 0o755 if member.isdir() else 0o644
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    return member
