from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, FastAPI, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.auth.deps import UNAUTHORIZED_RESPONSE, TeamDep
from app.datasets import deletion, service, upload
from app.datasets.schemas import DatasetList, DatasetRead, DatasetUploadForm, upload_form_schema
from app.db.session import after_commit
from app.deps import SessionDep, SettingsDep
from app.idempotency import service as idempotency
from app.ids import new_id
from app.limits import Limits, LimitsDep
from app.links import links
from app.security.slots import parsing_limiter, upload_slot
from app.settings import Settings
from app.storage.scratch import upload_tmp_dir

UPLOAD_FORM_SCHEMA = "DatasetUploadForm"
UPLOAD_FORM_REF = f"#/components/schemas/{UPLOAD_FORM_SCHEMA}"

router = APIRouter(prefix="/datasets", tags=["datasets"], responses=UNAUTHORIZED_RESPONSE)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetRead,
    responses={
        201: links(
            "dataset_id",
            {
                "GetDataset": ("GET", "/datasets/{dataset_id}"),
                "DeleteDataset": ("DELETE", "/datasets/{dataset_id}"),
            },
        ),
        413: {
            "description": "The file is larger than the team's upload limit "
            "(payload_too_large); nothing is kept"
        },
        429: {
            "description": "The team already has its most uploads in progress "
            "(too_many_uploads); retry after `Retry-After` seconds",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        },
        503: {
            "description": "The object store is unavailable (storage_unavailable); nothing is "
            "kept. Retry after `Retry-After` seconds",
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
    with 422 dataset_too_large.

    The file streams into the object store as it arrives and is kept there only once it is
    accepted: a refused upload (413, 422, a replay, a client that goes away) leaves no object
    behind. A store that cannot be used answers 503 storage_unavailable and keeps nothing."""
    limiter = parsing_limiter(request.app)
    # Made before the body arrives: the bytes go to the store under the dataset's own key.
    dataset_id = new_id("ds")
    with upload_slot(team.id, settings.uploads_per_team):
        # In a thread: the first use of the store makes its client (boto3 imports slowly).
        stage = await anyio.to_thread.run_sync(service.stage_for, dataset_id)
        received = await upload.receive_upload(
            request, upload_tmp_dir(settings), limits, limiter, stage
        )
        store = partial(
            _store, session, settings, limits, team.id, dataset_id, received, idempotency_key
        )
        return await anyio.to_thread.run_sync(store, limiter=limiter)


def _store(
    session: Session,
    settings: Settings,
    limits: Limits,
    team_id: str,
    dataset_id: str,
    received: upload.ReceivedUpload,
    idempotency_key: str | None,
) -> DatasetRead | Response:
    """Validate and keep a received upload as `dataset_id`, or discard it (its temporary file
    and staged object), whatever happens."""
    try:
        try:
            form = DatasetUploadForm.model_validate(received.fields)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            ) from exc
        name, column_mapping = form.name, form.column_mapping
        # The file was hashed as it arrived, so a retry is known before anything is stored.
        body = {"file_sha256": received.sha256, "filename": received.filename}
        body |= {"name": name, "column_mapping": column_mapping}
        idem = idempotency.request_for("POST /datasets", idempotency_key, body, team_id=team_id)
        if idem and (stored := idempotency.find(session, idem)):
            received.discard()
            return stored.replay()
    except BaseException:
        received.discard()
        raise
    dataset = service.store_upload(
        session,
        settings,
        received,
        name,
        column_mapping,
        dataset_id=dataset_id,
        team_id=team_id,
        limits=limits,
    )
    read = service.to_read(dataset)
    if idem:
        try:
            stored = idempotency.save(
                session,
                idem,
                status_code=status.HTTP_201_CREATED,
                body=read,
                resource_id=dataset.id,
                ttl_s=settings.idempotency_ttl_s,
            )
        except BaseException:
            _discard_upload(session, settings, dataset.storage_key)
            raise
        if stored:  # a concurrent duplicate committed first: its dataset is the one
            _discard_upload(session, settings, dataset.storage_key)
            return stored.replay()
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


def _discard_upload(session: Session, settings: Settings, key: str) -> None:
    """Forget an upload that will not be kept: its stored object and this process's copy of
    it (its row goes with the request's transaction, which idempotency.save rolled back or
    the raised error rolls back)."""
    service.discard_object(settings, key)


@router.get("", response_model=DatasetList)
def list_datasets(
    team: TeamDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DatasetList:
    """The caller's team's datasets, newest first, a page at a time: pass `next_cursor` as
    `cursor` for the next page while `has_more`."""
    page, has_more, next_cursor = service.list_datasets(
        session, team_id=team.id, limit=limit, cursor=cursor
    )
    return DatasetList(
        data=[service.to_read(d) for d in page], has_more=has_more, next_cursor=next_cursor
    )


@router.get(
    "/{dataset_id}", response_model=DatasetRead, responses={404: {"description": "Unknown dataset"}}
)
def get_dataset(dataset_id: str, team: TeamDep, session: SessionDep) -> DatasetRead:
    return service.to_read(service.get_dataset(session, dataset_id, team_id=team.id))


@router.delete(
    "/{dataset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={
        404: {"description": "Unknown dataset"},
        409: {
            "description": "A queued or running job uses the dataset (dataset_in_use; "
            "`details.jobs` names them): cancel them or wait until they finish"
        },
    },
)
def delete_dataset(
    dataset_id: str, team: TeamDep, session: SessionDep, settings: SettingsDep
) -> Response:
    """Delete a dataset: its record, its file in the object store and the API's copy of it.
    Refused (409 dataset_in_use) while a queued or running job uses it in any role; finished
    jobs that used it keep their record (their reference to it no longer resolves).

    The record goes first; the file right after, and a store that fails then is logged and
    leaves only an object that nothing names (a sweep of the store can remove it)."""
    key = deletion.delete_dataset(session, dataset_id, team_id=team.id)
    after_commit(session, lambda: deletion.remove_dataset_object(settings, dataset_id, key))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
