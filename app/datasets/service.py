"""Dataset use cases: store and validate an upload, read, list."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.datasets.models import Dataset
from app.datasets.parsing import DatasetFormatError, describe_dataset, detect_format
from app.datasets.schemas import DatasetRead
from app.errors import NotFound, PayloadTooLarge, ValidationFailed
from app.ids import new_id
from app.settings import Settings
from app.storage import dataset_key, resolve_key, upload_tmp_dir

CHUNK = 1024 * 1024


def _copy_limited(src: BinaryIO, dest: BinaryIO, limit: int) -> tuple[int, str]:
    """Copy in chunks, hashing; raise PayloadTooLarge as soon as `limit` is passed."""
    digest = hashlib.sha256()
    size = 0
    while chunk := src.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"the upload is larger than the limit of {limit} bytes "
                "(setting EMBEDTUNE_MAX_UPLOAD_BYTES)",
                {"limit_bytes": limit},
            )
        digest.update(chunk)
        dest.write(chunk)
    return size, digest.hexdigest()


def store_upload(
    session: Session, settings: Settings, src: BinaryIO, filename: str | None, name: str | None
) -> Dataset:
    """Validate an uploaded file and keep it. Raises 413 over the limit, 422 naming the row."""
    fd, tmp_name = tempfile.mkstemp(dir=upload_tmp_dir(settings), suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            size, sha256 = _copy_limited(src, out, settings.max_upload_bytes)
        if size == 0:
            raise ValidationFailed(
                "file: the upload is empty", {"field": "file"}, code="dataset_invalid"
            )
        with tmp.open("rb") as fh:
            head = fh.read(4096)
        try:
            fmt = detect_format(filename, head)
            description = describe_dataset(tmp, fmt)
        except DatasetFormatError as exc:
            raise ValidationFailed(
                f"file: {exc.message}", {"field": "file", **exc.details}, code="dataset_invalid"
            ) from exc
        dataset_id = new_id("ds")
        key = dataset_key(dataset_id, description.format)
        final = resolve_key(settings, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    dataset = Dataset(
        id=dataset_id,
        name=(name or filename or dataset_id)[:200],
        format=description.format,
        kind=description.kind,
        columns=list(description.columns),
        text_columns=list(description.text_columns),
        rows=description.rows,
        size_bytes=size,
        sha256=sha256,
        storage_key=key,
    )
    session.add(dataset)
    try:
        session.flush()
    except Exception:
        final.unlink(missing_ok=True)
        raise
    return dataset


def get_dataset(session: Session, dataset_id: str) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFound(f"dataset '{dataset_id}' does not exist", {"dataset": dataset_id})
    return dataset


def list_datasets(session: Session) -> list[Dataset]:
    return list(session.scalars(select(Dataset).order_by(Dataset.created_at.desc())))


def to_read(dataset: Dataset) -> DatasetRead:
    return DatasetRead.model_validate(dataset, from_attributes=True)
