"""Packing a saved model folder into a .tar.gz for download."""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ArchiveInfo:
    size_bytes: int
    sha256: str


def make_archive(model_dir: Path, archive_path: Path) -> ArchiveInfo:
    """Write `model_dir`'s contents as a gzip tar at `archive_path`, atomically.

    The archive's top level is the folder's contents, not the folder itself: extracting it into an
    empty directory gives the sentence-transformers model folder directly. The archive is written
    to a temporary file next to `archive_path` and renamed into place, so readers never see a
    partial file.
    """
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
            with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                for child in sorted(model_dir.iterdir()):
                    tar.add(child, arcname=child.name, recursive=True, filter=_portable)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp_path, 0o600)  # at rest it is the service user's; the API serves it
        info = ArchiveInfo(size_bytes=tmp_path.stat().st_size, sha256=sha256_file(tmp_path))
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


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
