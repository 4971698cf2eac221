from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile, status

from app.datasets import service
from app.datasets.schemas import DatasetList, DatasetRead
from app.deps import SessionDep, SettingsDep
from app.errors import PayloadTooLarge

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
) -> DatasetRead:
    """Upload training data: triplets (anchor, positive, negative[, negative_2, ...]), pairs
    (anchor, positive), STS (sentence1, sentence2, score) or NLI pairs (premise, hypothesis,
    label; stored converted to triplets)."""
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
    session.commit()
    return service.to_read(dataset)


@router.get("", response_model=DatasetList)
def list_datasets(session: SessionDep) -> DatasetList:
    return DatasetList(data=[service.to_read(d) for d in service.list_datasets(session)])


@router.get("/{dataset_id}", response_model=DatasetRead)
def get_dataset(dataset_id: str, session: SessionDep) -> DatasetRead:
    return service.to_read(service.get_dataset(session, dataset_id))
