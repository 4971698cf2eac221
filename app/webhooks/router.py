"""/webhooks: a team's webhook endpoints and their deliveries."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response, status

from app.auth.deps import UNAUTHORIZED_RESPONSE, TeamDep
from app.deps import SessionDep, SettingsDep
from app.links import links
from app.webhooks import service
from app.webhooks.schemas import (
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryList,
    WebhookList,
    WebhookRead,
)

router = APIRouter(prefix="/webhooks", tags=["webhooks"], responses=UNAUTHORIZED_RESPONSE)
_UNKNOWN: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown webhook"}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    responses={
        201: links(
            "webhook_id",
            {
                "GetWebhook": ("GET", "/webhooks/{webhook_id}"),
                "GetWebhookDeliveries": ("GET", "/webhooks/{webhook_id}/deliveries"),
                "DeleteWebhook": ("DELETE", "/webhooks/{webhook_id}"),
            },
        ),
        409: {"description": "The team has its most webhook endpoints (too_many_webhooks)"},
    },
)
def create_webhook(
    payload: WebhookCreate,
    team: TeamDep,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> WebhookCreated:
    """Subscribe a URL to job events of your team. The response holds the signing `secret`,
    shown this once: every request is signed by the Standard Webhooks specification
    (`webhook-id`, `webhook-timestamp`, `webhook-signature`). A URL that is or resolves to a
    loopback, link-local or private address answers 422 webhook_url_refused."""
    endpoint, secret = service.create_endpoint(session, payload, settings, team_id=team.id)
    response.headers["Location"] = f"/webhooks/{endpoint.id}"
    return service.to_created(endpoint, secret)


@router.get("", response_model=WebhookList)
def list_webhooks(team: TeamDep, session: SessionDep) -> WebhookList:
    """Your team's webhook endpoints, newest first (never their secrets)."""
    return WebhookList(
        data=[service.to_read(e) for e in service.list_endpoints(session, team_id=team.id)]
    )


@router.get("/{webhook_id}", response_model=WebhookRead, responses=_UNKNOWN)
def get_webhook(webhook_id: str, team: TeamDep, session: SessionDep) -> WebhookRead:
    """One endpoint (without its secret)."""
    return service.to_read(service.get_endpoint(session, webhook_id, team_id=team.id))


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=_UNKNOWN,
)
def delete_webhook(webhook_id: str, team: TeamDep, session: SessionDep) -> Response:
    """Delete an endpoint; its pending deliveries are not sent."""
    service.delete_endpoint(session, webhook_id, team_id=team.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{webhook_id}/deliveries", response_model=WebhookDeliveryList, responses=_UNKNOWN)
def list_deliveries(
    webhook_id: str,
    team: TeamDep,
    session: SessionDep,
    status_: Annotated[
        Literal["pending", "delivered", "failed"] | None, Query(alias="status")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> WebhookDeliveryList:
    """The endpoint's deliveries, newest first: status (pending, delivered, failed), attempts,
    the last answer's status code or error, the next attempt's time."""
    page, has_more, next_cursor = service.list_deliveries(
        session, webhook_id, team_id=team.id, status=status_, limit=limit, cursor=cursor
    )
    return WebhookDeliveryList(
        data=[service.delivery_read(d) for d in page], has_more=has_more, next_cursor=next_cursor
    )
