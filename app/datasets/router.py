from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.auth.deps import UNAUTHORIZED_RESPONSE, TeamDep
from app.datasets import service, upload
from app.datasets.schemas import DatasetList, DatasetRead, DatasetUploadForm, upload_form_schema
from app.deps import SessionDep, SettingsDep
from app.idempotency import service as idempotency
from app.limits import Limits, LimitsDep
from app.links import links
from app.security.slots import parsing_limiter, upload_slot
from app.settings import Settings
from app.storage import resolve_key, upload_tmp_dir

UPLOAD_FORM_SCHEMA = "DatasetUploadForm"
UPLOAD_FORM_REF = f"#/components/schemas/{UPLOAD_FORM_SCHEMA}"

router = APIRouter(prefix="/datasets", tags=["datasets"], responses=UNAUTHORIZED_RESPONSE)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetRead,
    responses={
        201: links("dataset_id", {"GetDataset": ("GET", "/datasets/{dataset_id}")}),
        413: {
            "description": "The file is larger than the team's upload limit "
            "(payload_too_large); nothing is kept"
        },
        429: {
            "description": "The team already has its most uploads in progress "
            "(too_many_uploads); retry after `Retry-After` seconds",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        },
    },
    # The body is read as it streams in (app.datasets.upload), so it is documented here.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": {"$ref": UPLOAD_FORM_REF}}},
        }
    },
)
async def upload_dataset(
    request: Request,
    team: TeamDep,
    session: SessionDep,
    settings: SettingsDep,
    limits: LimitsDep,
    idempotency_key: idempotency.IdempotencyKeyDep = None,
) -> DatasetRead | Response:
    """Upload training data: triplets (anchor, positive, negative[, negative_2, ...]), pairs
    (anchor, positive), STS (sentence1, sentence2, score) or NLI pairs (premise, hypothesis,
    label; stored converted to triplets). With an `Idempotency-Key`, a retry with the same file
    and fields returns the first response and stores nothing.

    A file over the team's upload limit is refused with 413 as soon as it passes the limit
    (by Content-Length, else while it streams); one with more rows than the team's row limit
    with 422 dataset_too_large."""
    limiter = parsing_limiter(request.app)
    with upload_slot(team.id, settings.uploads_per_team):
        received = await upload.receive_upload(request, upload_tmp_dir(settings), limits, limiter)
        try:
            form = DatasetUploadForm.model_validate(received.fields)
        except ValidationError as exc:
            received.path.unlink(missing_ok=True)
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            ) from exc
        store = partial(_store, session, settings, limits, team.id, received, form, idempotency_key)
        return await anyio.to_thread.run_sync(store, limiter=limiter)


def _store(
    session: Session,
    settings: Settings,
    limits: Limits,
    team_id: str,
    received: upload.ReceivedUpload,
    form: DatasetUploadForm,
    idempotency_key: str | None,
) -> DatasetRead | Response:
    """Validate and keep a received upload (its temporary file is moved or removed)."""
    name, column_mapping = form.name, form.column_mapping
    dataset = service.store_upload(
        session,
        settings,
        received,
        name,
        column_mapping,
        team_id=team_id,
        limits=limits,
    )
    read = service.to_read(dataset)
    # The upload is hashed while it is stored, so the key is checked only now; a replay
    # removes what this retry stored and rolls its row back.
    body = {"file_sha256": dataset.sha256, "filename": received.filename}
    body |= {"name": name, "column_mapping": column_mapping}
    idem = idempotency.request_for("POST /datasets", idempotency_key, body, team_id=team_id)
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


def register_openapi_schemas(app: FastAPI) -> None:
    """Add the upload form's schema (UPLOAD_FORM_REF) to the app's OpenAPI components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = build()
        if fresh:
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas[UPLOAD_FORM_SCHEMA] = upload_form_schema()
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _discard_upload(session: Session, path: Path) -> None:
    """Forget an upload that will not be kept: its row (rolled back) and its stored file."""
    session.rollback()
    path.unlink(missing_ok=True)


@router.get("", response_model=DatasetList)
def list_datasets(team: TeamDep, session: SessionDep) -> DatasetList:
    """The caller's team's datasets, newest first."""
    datasets = service.list_datasets(session, team_id=team.id)
    return DatasetList(data=[service.to_read(d) for d in datasets])


@router.get(
    "/{dataset_id}", response_model=DatasetRead, responses={404: {"description": "Unknown dataset"}}
)
def get_dataset(dataset_id: str, team: TeamDep, session: SessionDep) -> DatasetRead:
    return service.to_read(service.get_dataset(session, dataset_id, team_id=team.id))
