"""The worker's traffic with the object store: checkpoints up and down, the model up, all
retried through short outages.

The model goes up as a stream: the archive is written straight into the store's writer (no
temporary file, hashed as it is written), which makes it visible under its key only on commit.

A checkpoint is complete in the store only once its marker object is there, written after every
other file of the folder: a worker that died while uploading leaves objects without a marker,
which are never resumed from. The latest complete checkpoint of any attempt is what the next
attempt, on any machine, resumes from.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tenacity import (
    before_sleep_log,
    retry,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from app.settings import get_settings
from app.storage import (
    ObjectStore,
    StorageUnavailable,
    attempt_checkpoints_prefix,
    checkpoints_prefix,
    get_store,
)
from rules.checkpoints import COMPLETE_MARKER
from rules.errors import TrainingError
from worker.training.archive import ArchiveInfo, write_archive

log = logging.getLogger(__name__)
T = TypeVar("T")
_MARKER_KEY = re.compile(r"attempt-(\d+)/checkpoint-(\d+)/" + re.escape(COMPLETE_MARKER))


class StorageFailed(TrainingError):
    """The store stayed unavailable for longer than EMBEDTUNE_STORAGE_RETRY_S."""

    code = "storage_unavailable"


def retrying(what: str, fn: Callable[[], T], limit_s: float | None = None) -> T:
    """Call `fn`, retrying StorageUnavailable with backoff for `limit_s` (default
    storage_retry_s); then raise StorageFailed (the job fails storage_unavailable with a
    message saying what to do)."""
    limit = limit_s if limit_s is not None else get_settings().storage_retry_s

    @retry(
        retry=retry_if_exception_type(StorageUnavailable),
        stop=stop_after_delay(limit),
        wait=wait_exponential(multiplier=0.5, max=15),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    )
    def attempt() -> T:
        return fn()

    try:
        return attempt()
    except StorageUnavailable as exc:
        raise StorageFailed(
            f"The object store could not be used for {limit:.0f} s while the worker tried "
            f"{what}: {exc}. Check EMBEDTUNE_STORAGE_URL / EMBEDTUNE_S3_ENDPOINT_URL and the "
            "store's health, then submit the job again."
        ) from exc


def latest_checkpoint(store: ObjectStore, job_id: str) -> tuple[str, int] | None:
    """The store prefix and step of the job's latest complete checkpoint, or None."""
    root = checkpoints_prefix(job_id)
    best: tuple[int, int] | None = None
    for info in store.list(root):
        match = _MARKER_KEY.fullmatch(info.key[len(root) :])
        if match:
            found = (int(match.group(2)), int(match.group(1)))  # step first, then attempt
            best = found if best is None or found > best else best
    if best is None:
        return None
    step, attempt = best
    return f"{attempt_checkpoints_prefix(job_id, attempt)}checkpoint-{step}/", step


def fetch_checkpoint(store: ObjectStore, prefix: str, dest: Path) -> Path:
    """Download the checkpoint under `prefix` into `dest`/checkpoint-<step>; that folder."""
    folder = dest / prefix.rstrip("/").rsplit("/", 1)[-1]
    for info in store.list(prefix):
        relative = info.key[len(prefix) :]
        store.get_file(info.key, folder / relative)
    return folder


def publish_checkpoint(job_id: str, attempt: int, folder: Path) -> None:
    """Upload a complete local checkpoint folder (marker last), then drop this attempt's older
    checkpoints from the store. Raises StorageFailed when the store stays down."""
    store = get_store()
    prefix = f"{attempt_checkpoints_prefix(job_id, attempt)}{folder.name}/"
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != COMPLETE_MARKER)

    def upload() -> None:
        for path in files:
            store.put_file(prefix + path.relative_to(folder).as_posix(), path)
        store.put_file(prefix + COMPLETE_MARKER, folder / COMPLETE_MARKER)
        # Only after the new one is complete: there is always one to resume from.
        own = attempt_checkpoints_prefix(job_id, attempt)
        older = {
            info.key[len(own) :].split("/", 1)[0]
            for info in store.list(own)
            if not info.key.startswith(prefix)
        }
        for name in older:
            store.delete_prefix(f"{own}{name}/")

    # Shorter than for the model: training waits while a checkpoint is stored.
    limit_s = min(30.0, get_settings().storage_retry_s)
    retrying(f"to store checkpoint {folder.name}", upload, limit_s)


def store_model(key: str, model_dir: Path) -> ArchiveInfo:
    """Archive `model_dir` into the store under `key` in one pass; its size and sha256.

    A failed attempt leaves nothing under `key` (the writer aborts) and the whole archive is
    written again, retried like every store call; a model folder that cannot be read fails at
    once."""
    store = get_store()

    def upload() -> ArchiveInfo:
        with store.writer(key) as out:
            info = write_archive(model_dir, out)
            out.commit()
        return info

    return retrying("to store the model", upload)
