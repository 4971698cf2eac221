"""Dataset use cases: store and validate an upload (converting NLI pairs), read, list."""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from app import cursors
from app.datasets.errors import DatasetFormatError
from app.datasets.formats import detect_format
from app.datasets.models import Dataset
from app.datasets.preflight import preflight_report
from app.datasets.roles import count_negatives, parse_column_mapping
from app.datasets.schemas import DatasetRead
from app.datasets.upload import SNIFF_BYTES, ReceivedUpload, StagedObject, StageOpener
from app.errors import NotFound, ValidationFailed
from app.limits import Limits, limit_source, limits_for
from app.settings import Settings
from app.storage import StorageError, dataset_key, get_store
from app.storage.scratch import forget_local_copy, keep_local_copy

if TYPE_CHECKING:
    from app.datasets.readers import ReadBounds

# The ids app.ids.new_id("ds") makes: what a GET /datasets cursor may carry.
_DATASET_ID = re.compile(r"ds_[0-9a-f]{24}")

_LIMIT_HINTS: dict[str, str] = {
    "max_text_chars": "shorten or split the long texts, or ask for a higher limit",
}


def _invalid(exc: DatasetFormatError) -> ValidationFailed:
    message = f"{exc.field}: {exc.message}"
    if exc.limit_field is not None:
        hint = _LIMIT_HINTS.get(exc.limit_field, "split it or ask for a higher limit")
        message += f" ({limit_source(exc.limit_field)}); {hint}"
    return ValidationFailed(message, {"field": exc.field, **exc.details}, code=exc.code)


def read_bounds(limits: Limits) -> ReadBounds:
    """What reading an upload may hold, from the team's limits."""
    from app.datasets.readers import ReadBounds  # lazy: pyarrow costs the idle API ~60 MB

    return ReadBounds(
        max_text_chars=limits.max_text_chars,
        max_uncompressed_bytes=limits.max_dataset_uncompressed_bytes,
    )


def stage_for(dataset_id: str) -> StageOpener:
    """Where an upload's bytes go while they arrive: the object dataset `dataset_id` will have
    if the upload is accepted as is, in the format its name and first bytes tell (nothing when
    they tell none: such an upload is refused)."""
    store = get_store()

    def open_staged(filename: str | None, head: bytes) -> StagedObject | None:
        try:
            fmt = detect_format(filename, head)
        except DatasetFormatError:
            return None
        key = dataset_key(dataset_id, fmt)
        return StagedObject(key, store.writer(key))

    return open_staged


def store_upload(
    session: Session,
    settings: Settings,
    received: ReceivedUpload,
    name: str | None,
    column_mapping: str | None = None,
    *,
    dataset_id: str,
    team_id: str,
    limits: Limits | None = None,
) -> Dataset:
    """Validate a received upload (its file in the scratch uploads folder, within the size
    limit, its bytes staged in the store by `stage_for(dataset_id)`) and keep it as dataset
    `dataset_id` of team `team_id`. Raises 422 naming the row, 422 dataset_too_large past the
    rows or the uncompressed size of ``limits`` (default: the settings'), 422 text_too_long
    for a text over its ``max_text_chars`` (naming the row and column), StorageUnavailable
    when the store cannot take it. The received file is kept as this process's copy of the
    object or removed, and the staged object committed or aborted, whatever happens: a refused
    upload leaves no object.

    ``column_mapping`` is the form field's JSON text (role -> the file's column name). NLI
    pairs are stored converted to triplets (JSON Lines); otherwise the uploaded bytes are kept.
    """
    tmp, filename = received.path, received.filename
    size, sha256 = received.size, received.sha256
    converted = tmp.with_name(tmp.name + ".converted")
    store = get_store()
    stored: str | None = None  # the key, once the object exists
    try:
        try:
            mapping = parse_column_mapping(column_mapping)
        except DatasetFormatError as exc:
            raise _invalid(exc) from exc
        if size == 0:
            raise ValidationFailed(
                "file: the upload is empty", {"field": "file"}, code="dataset_invalid"
            )
        with tmp.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
        limits = limits or limits_for(settings)
        from app.datasets.parsing import describe_dataset  # lazy: pyarrow, as read_bounds

        try:
            fmt = detect_format(filename, head)
            description = describe_dataset(
                tmp,
                fmt,
                mapping,
                converted_path=converted,
                max_rows=limits.max_dataset_rows,
                bounds=read_bounds(limits),
            )
        except DatasetFormatError as exc:
            raise _invalid(exc) from exc
        stored_format = description.stored_format or description.format
        key = dataset_key(dataset_id, stored_format)
        kept = converted if description.stored_format else tmp
        preflight = preflight_report(
            kept, stored_format, description.kind, description.text_columns
        )
        staged = received.staged
        if staged is not None and staged.key == key and kept == tmp:
            staged.commit()
        else:
            # Converted (NLI pairs stored as triplets), or not staged: the kept file goes up.
            if staged is not None:
                staged.abort()
            store.put_file(key, kept)
        stored = key
        # The job preflight reads it back soon: keep the copy, so that needs no download.
        keep_local_copy(store, key, kept, settings)
        dataset = Dataset(
            id=dataset_id,
            team_id=team_id,
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
        session.flush()
    except BaseException:
        if stored is not None:
            discard_object(settings, stored)
        raise
    finally:
        received.discard()
        converted.unlink(missing_ok=True)
    return dataset


def discard_object(settings: Settings, key: str) -> None:
    """Remove a dataset object that no row will name, and this process's copy of it. A store
    that fails here leaves harmless garbage behind (no row names it): the original error, if
    any, is what the caller reports."""
    forget_local_copy(settings, key)
    with contextlib.suppress(StorageError):
        get_store().delete(key)


def find_dataset(session: Session, dataset_id: str, *, team_id: str) -> Dataset | None:
    """Team `team_id`'s dataset `dataset_id`; None when unknown or another team's."""
    dataset = session.get(Dataset, dataset_id)
    return dataset if dataset is not None and dataset.team_id == team_id else None


def get_dataset(session: Session, dataset_id: str, *, team_id: str) -> Dataset:
    """The dataset; 404 when unknown or another team's (the same answer: no existence leak)."""
    dataset = find_dataset(session, dataset_id, team_id=team_id)
    if dataset is None:
        raise NotFound(f"dataset '{dataset_id}' does not exist", {"dataset": dataset_id})
    return dataset


def list_datasets(
    session: Session, *, team_id: str, limit: int, cursor: str | None
) -> tuple[list[Dataset], bool, str | None]:
    """Team `team_id`'s datasets, newest first, `limit` at most, after `cursor` (the
    `next_cursor` of the page before). Returns (page, has_more, next_cursor)."""
    stmt = select(Dataset).where(Dataset.team_id == team_id)
    if cursor:
        created, dataset_id = cursors.decode(cursor, _DATASET_ID, "GET /datasets")
        stmt = stmt.where(
            or_(
                Dataset.created_at < created,
                and_(Dataset.created_at == created, Dataset.id < dataset_id),
            )
        )
    stmt = stmt.order_by(Dataset.created_at.desc(), Dataset.id.desc()).limit(limit + 1)
    rows = list(session.scalars(stmt))
    has_more = len(rows) > limit
    page = rows[:limit]
    next_cursor = cursors.encode(page[-1].created_at, page[-1].id) if has_more and page else None
    return page, has_more, next_cursor


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
