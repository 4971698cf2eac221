"""Dataset use cases: store and validate an upload (converting NLI pairs), read, list."""

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
from app.datasets.preflight import preflight_report
from app.datasets.roles import count_negatives, parse_column_mapping
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


def _invalid(exc: DatasetFormatError) -> ValidationFailed:
    return ValidationFailed(
        f"{exc.field}: {exc.message}", {"field": exc.field, **exc.details}, code="dataset_invalid"
    )


def store_upload(
    session: Session,
    settings: Settings,
    src: BinaryIO,
    filename: str | None,
    name: str | None,
    column_mapping: str | None = None,
) -> Dataset:
    """Validate an uploaded file and keep it. Raises 413 over the limit, 422 naming the row.

    ``column_mapping`` is the form field's JSON text (role -> the file's column name). NLI
    pairs are stored converted to triplets (JSON Lines); otherwise the uploaded bytes are kept.
    """
    try:
        mapping = parse_column_mapping(column_mapping)
    except DatasetFormatError as exc:
        raise _invalid(exc) from exc
    tmp_dir = upload_tmp_dir(settings)
    fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, suffix=".part")
    tmp = Path(tmp_name)
    converted = tmp.with_name(tmp.name + ".converted")
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
            description = describe_dataset(tmp, fmt, mapping, converted_path=converted)
        except DatasetFormatError as exc:
            raise _invalid(exc) from exc
        dataset_id = new_id("ds")
        stored_format = description.stored_format or description.format
        key = dataset_key(dataset_id, stored_format)
        final = resolve_key(settings, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(converted if description.stored_format else tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
        converted.unlink(missing_ok=True)
    try:
        preflight = preflight_report(
            final, stored_format, description.kind, description.text_columns
        )
    except BaseException:
        final.unlink(missing_ok=True)
        raise
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
        stored_format=description.stored_format,
        column_mapping=mapping,
        conversion=description.conversion,
        preflight=preflight,
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
    return DatasetRead.model_validate(
        {
            "id": dataset.id,
            "name": dataset.name,
            "format": dataset.format,
            "kind": dataset.kind,
            "columns": dataset.columns,
            "text_columns": dataset.text_columns,
            "negatives": count_negatives(dataset.kind, dataset.text_columns),
            "column_mapping": dataset.column_mapping,
            "conversion": dataset.conversion,
            "rows": dataset.rows,
            "preflight": dataset.preflight,
            "size_bytes": dataset.size_bytes,
            "sha256": dataset.sha256,
            "created_at": dataset.created_at,
        }
    )
