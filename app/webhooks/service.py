"""Webhook endpoint use cases: create, read, list, delete, list deliveries. Services never
commit; the request's unit of work does."""

from __future__ import annotations

import base64
import re
import secrets

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session

from app import cursors
from app.errors import Conflict, NotFound, ValidationFailed
from app.ids import new_id
from app.settings import Settings
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from app.webhooks.schemas import (
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryRead,
    WebhookRead,
)
from app.webhooks.urls import UrlRefused, check_destination

# Most webhook endpoints of one team.
MAX_ENDPOINTS_PER_TEAM = 20


def new_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def create_endpoint(
    session: Session, payload: WebhookCreate, settings: Settings, *, team_id: str
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint of team `team_id`, and its secret. 422 webhook_url_refused for a URL
    that is (or resolves to) a private address (unless the settings allow it) or does not
    resolve; 409 too_many_webhooks at MAX_ENDPOINTS_PER_TEAM."""
    try:
        check_destination(payload.url, allow_private=settings.webhook_allow_private_urls)
    except UrlRefused as exc:
        raise ValidationFailed(f"url: {exc}", {"field": "url"}, code="webhook_url_refused") from exc
    count = session.scalar(
        select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.team_id == team_id)
    )
    if (count or 0) >= MAX_ENDPOINTS_PER_TEAM:
        raise Conflict(
            f"your team already has {MAX_ENDPOINTS_PER_TEAM} webhook endpoints, the most it may "
            "have; delete one first",
            {"max": MAX_ENDPOINTS_PER_TEAM},
            code="too_many_webhooks",
        )
    secret = new_secret()
    endpoint = WebhookEndpoint(
        id=new_id("wh"),
        team_id=team_id,
        url=payload.url,
        events=list(payload.events),
        secret=secret,
    )
    session.add(endpoint)
    session.flush()
    return endpoint, secret


def get_endpoint(session: Session, webhook_id: str, *, team_id: str) -> WebhookEndpoint:
    """Team `team_id`'s endpoint; 404 when unknown or another team's (the same answer)."""
    endpoint = session.get(WebhookEndpoint, webhook_id)
    if endpoint is None or endpoint.team_id != team_id:
        raise NotFound(f"webhook '{webhook_id}' does not exist", {"webhook": webhook_id})
    return endpoint


def list_endpoints(session: Session, *, team_id: str) -> list[WebhookEndpoint]:
    stmt = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.team_id == team_id)
        .order_by(WebhookEndpoint.created_at.desc(), WebhookEndpoint.id.desc())
    )
    return list(session.scalars(stmt))


def delete_endpoint(session: Session, webhook_id: str, *, team_id: str) -> None:
    """Delete the endpoint and its deliveries (pending ones are not sent)."""
    endpoint = get_endpoint(session, webhook_id, team_id=team_id)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    session.delete(endpoint)


def to_read(endpoint: WebhookEndpoint) -> WebhookRead:
    return WebhookRead.model_validate(
        {
            "id": endpoint.id,
            "url": endpoint.url,
            "events": endpoint.events,
            "created_at": endpoint.created_at,
        }
    )


def to_created(endpoint: WebhookEndpoint, secret: str) -> WebhookCreated:
    return WebhookCreated(**to_read(endpoint).model_dump(), secret=secret)


_MSG_ID = re.compile(r"msg_[0-9a-f]{24}")


def list_deliveries(
    session: Session,
    webhook_id: str,
    *,
    team_id: str,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[WebhookDelivery], bool, str | None]:
    """The endpoint's deliveries, newest first. Returns (page, has_more, next_cursor)."""
    endpoint = get_endpoint(session, webhook_id, team_id=team_id)
    stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
    if status is not None:
        stmt = stmt.where(WebhookDelivery.status == status)
    if cursor:
        created, msg_id = cursors.decode(cursor, _MSG_ID, "GET /webhooks/{id}/deliveries")
        stmt = stmt.where(
            or_(
                WebhookDelivery.created_at < created,
                and_(WebhookDelivery.created_at == created, WebhookDelivery.id < msg_id),
            )
        )
    stmt = stmt.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
    rows = list(session.scalars(stmt.limit(limit + 1)))
    page = rows[:limit]
    has_more = len(rows) > limit
    next_cursor = cursors.encode(page[-1].created_at, page[-1].id) if has_more and page else None
    return page, has_more, next_cursor


def delivery_read(delivery: WebhookDelivery) -> WebhookDeliveryRead:
    return WebhookDeliveryRead.model_validate(
        {
            "id": delivery.id,
            "type": delivery.event_type,
            "job_id": delivery.job_id,
            "status": delivery.status,
            "attempts": delivery.attempts,
            "next_attempt_at": delivery.next_attempt_at if delivery.status == "pending" else None,
            "last_status_code": delivery.last_status_code,
            "last_error": delivery.last_error,
            "created_at": delivery.created_at,
            "delivered_at": delivery.delivered_at,
        }
    )
