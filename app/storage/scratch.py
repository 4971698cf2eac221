"""Each process's own scratch space under its data dir, and local copies of stored objects.

Nothing here is shared between processes on different machines: a worker reads a dataset from
the store into its own cache, the API keeps a copy of what it just stored.
"""

from __future__ import annotations

import os
from pathlib import Path

from app.settings import Settings
from app.storage.base import ObjectMissing, ObjectStore
from app.storage.files import FileStore


def upload_tmp_dir(settings: Settings) -> Path:
    """Where uploads are parsed while they stream in."""
    path = settings.scratch_dir / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def job_work_dir(settings: Settings, job_id: str) -> Path:
    """A running job's work folder on this machine (model, trainer files, checkpoints being
    written); removed when the attempt ends."""
    return settings.scratch_dir / "jobs" / job_id


def _cache_path(settings: Settings, key: str) -> Path:
    return settings.scratch_dir / "cache" / key


def local_copy(store: ObjectStore, key: str, settings: Settings) -> Path:
    """A local file with the object's bytes: the store's own file for a folder store, else a
    cached download (objects under a key never change, so a copy of the right size is it).
    Raises ObjectMissing / StorageUnavailable like the store."""
    if isinstance(store, FileStore):
        path = store.root / key
        if store.head(key) is None:
            raise ObjectMissing(key)
        return path
    cached = _cache_path(settings, key)
    info = store.head(key)
    if info is None:
        raise ObjectMissing(key)
    if cached.is_file() and cached.stat().st_size == info.size:
        return cached
    store.get_file(key, cached)
    return cached


def keep_local_copy(store: ObjectStore, key: str, path: Path, settings: Settings) -> None:
    """Keep `path` (just stored under `key`) as this process's cached copy, so reading it back
    soon (the job preflight) needs no download. Moves the file; a folder store needs none."""
    if isinstance(store, FileStore):
        Path(path).unlink(missing_ok=True)
        return
    cached = _cache_path(settings, key)
    cached.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, cached)


def forget_local_copy(settings: Settings, key: str) -> None:
    _cache_path(settings, key).unlink(missing_ok=True)

