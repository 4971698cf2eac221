from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile, status
from sqlalchemy.orm import Session

from app.datasets import service
from app.datasets.schemas import DatasetList, DatasetRead
from app.deps import SessionDep, SettingsDep
from app.errors import PayloadTooLarge
from app.idempotency import service as idempotency
from app.storage import resolve_key

router = APIRouter(prefix="/datasets", tags=["datasets"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetRead)
def upload_dataset(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="JSONL, CSV or Parquet with text columns.")],
    name: Annotated[str | None, Form(max_length=200)] = None,
    column_mapping: Annotated[
        str | None,
        Form(
            description='JSON object role -> your column name, e.g. {"anchor": "query", '
            '"positive": "passage", "negative": "hard_negative"}. Roles: anchor, positive, '
            "negative, negative_1..negative_N, sentence1, sentence2, score, premise, "
            "hypothesis, label. Unmapped columns keep their own names."
        ),
    ] = None,
    idempotency_key: idempotency.IdempotencyKeyDep = None,
) -> DatasetRead | Response:
    """Upload training data: triplets (anchor, positive, negative[, negative_2, ...]), pairs
    (anchor, positive), STS (sentence1, sentence2, score) or NLI pairs (premise, hypothesis,
    label; stored converted to triplets). With an `Idempotency-Key`, a retry with the same file
    and fields returns the first response and stores nothing."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > settings.max_upload_bytes + 64 * 1024:
        raise PayloadTooLarge(
            f"the upload is larger than the limit of {settings.max_upload_bytes} bytes "
            "(setting EMBEDTUNE_MAX_UPLOAD_BYTES)",
            {"limit_bytes": settings.max_upload_bytes},
        )
    dataset = service.store_upload(
        session, settings, file.file, file.filename, name, column_mapping
    )
    read = service.to_read(dataset)
    # The upload is hashed while it is stored, so the key is checked only now; a replay
    # removes what this retry stored and rolls its row back.
    body = {"file_sha256": dataset.sha256, "filename": file.filename}
    body |= {"name": name, "column_mapping": column_mapping}
    idem = idempotency.request_for("POST /datasets", idempotency_key, body)
    if idem:
        path = resolve_key(settings, dataset.storage_key)
        try:
            stored = idempotency.find(session, idem) or idempotency.save(
                session,
                idem,
                status_code=status.HTTP_201_CREATED,
                body=read,
                resource_id=dataset.id,
                ttl_s=settings.idempotency_ttl_s,
            )
        except BaseException:
            _discard_upload(session, path)
            raise
        if stored:
            _discard_upload(session, path)
            return stored.replay()
    session.commit()
    return read


def _discard_upload(session: Session, path: Path) -> None:
    """Forget an upload that will not be kept: its row (rolled back) and its stored file."""
    session.rollback()
    path.unlink(missing_ok=True)


@router.get("", response_model=DatasetList)
def list_datasets(session: SessionDep) -> DatasetList:
    return DatasetList(data=[service.to_read(d) for d in service.list_datasets(session)])


@router.get("/{dataset_id}", response_model=DatasetRead)
def get_dataset(dataset_id: str, session: SessionDep) -> DatasetRead:
    return service.to_read(service.get_dataset(session, dataset_id))
