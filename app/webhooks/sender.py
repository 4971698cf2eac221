"""Sends due webhook deliveries from the outbox: signed, in order per job, retried with backoff.

Runs in every API process (app.main starts `run_sender`). Several processes may run it at once:
a delivery is claimed by a conditional UPDATE on its attempt count (the loser's update matches
no row), and the claim holds it for CLAIM_S, after which another sender may try again (the one
that claimed it died). The outcome is written only by the attempt that claimed it.

Order: a job's delivery to an endpoint is not sent while an earlier one of the same job to the
same endpoint is pending, so a receiver sees job.queued before job.started before
job.succeeded, unless an earlier one failed for good (after EMBEDTUNE_WEBHOOK_RETRY_FOR_S).
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import aliased
from standardwebhooks.webhooks import Webhook

from app.db.base import utcnow
from app.db.session import unit_of_work
from app.settings import Settings, get_settings
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from app.webhooks.urls import UrlRefused, check_destination

log = logging.getLogger(__name__)

# How long a claimed delivery is held by its sender (longer than one attempt can take).
CLAIM_S = 60.0
TIMEOUT_S = 10.0
BATCH = 50
SENDERS = 8
# Retry delays in units of EMBEDTUNE_WEBHOOK_RETRY_BASE_S (5 s: 5 s, 30 s, 2 min, 10 min,
# 30 min, 1 h), then every LAST, until EMBEDTUNE_WEBHOOK_RETRY_FOR_S since the delivery was made.
BACKOFF = (1, 6, 24, 120, 360, 720)
LAST = 1440
USER_AGENT = "Embedtune-Webhooks/1"
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Claimed:
    seq: int
    msg_id: str
    attempt: int
    url: str
    secret: str
    body: str
    created_at: datetime


def retry_delay(settings: Settings, attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones."""
    units = BACKOFF[attempts - 1] if attempts <= len(BACKOFF) else LAST
    return settings.webhook_retry_base_s * units


def _due(now: datetime) -> list[tuple[int, int]]:
    """(seq, attempts) of due deliveries, oldest first, each the first pending one of its job
    to its endpoint."""
    earlier = aliased(WebhookDelivery)
    blocked = exists().where(
        and_(
            earlier.endpoint_id == WebhookDelivery.endpoint_id,
            earlier.job_id == WebhookDelivery.job_id,
            earlier.status == "pending",
            earlier.seq < WebhookDelivery.seq,
        )
    )
    with unit_of_work() as session:
        rows = session.execute(
            select(WebhookDelivery.seq, WebhookDelivery.attempts)
            .where(
                WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at <= now,
                ~blocked,
            )
            .order_by(WebhookDelivery.seq)
            .limit(BATCH)
        ).all()
    return [(row.seq, row.attempts) for row in rows]


def _claim(seq: int, attempts: int) -> Claimed | None:
    now = utcnow()
    with unit_of_work() as session:
        moved = session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.seq == seq,
                WebhookDelivery.status == "pending",
                WebhookDelivery.attempts == attempts,
                WebhookDelivery.next_attempt_at <= now,
            )
            .values(attempts=attempts + 1, next_attempt_at=now + timedelta(seconds=CLAIM_S))
            .execution_options(synchronize_session=False)
        )
        if getattr(moved, "rowcount", 0) != 1:
            return None  # another sender has it
        row = session.execute(
            select(
                WebhookDelivery.id,
                WebhookDelivery.payload,
                WebhookDelivery.created_at,
                WebhookEndpoint.url,
                WebhookEndpoint.secret,
            )
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(WebhookDelivery.seq == seq)
        ).one_or_none()
        if row is None:
            return None  # its endpoint was deleted meanwhile
    body = json.dumps(row.payload, separators=(",", ":"), ensure_ascii=False)
    return Claimed(seq, row.id, attempts + 1, row.url, row.secret, body, row.created_at)


def _post(client: httpx.Client, settings: Settings, claimed: Claimed) -> tuple[int | None, str]:
    """(status code or None, error) of one attempt; error is "" on a 2xx."""
    try:
        check_destination(claimed.url, allow_private=settings.webhook_allow_private_urls)
    except UrlRefused as exc:
        return None, f"refused: {exc}"
    now = utcnow()
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": claimed.msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(claimed.secret).sign(claimed.msg_id, now, claimed.body),
    }
    try:
        response = client.post(claimed.url, content=claimed.body.encode(), headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS] or type(exc).__name__
    if 200 <= response.status_code < 300:
        return response.status_code, ""
    return response.status_code, f"HTTP {response.status_code}"


def _record(settings: Settings, claimed: Claimed, code: int | None, error: str) -> None:
    now = utcnow()
    values: dict[str, object] = {"last_status_code": code, "last_error": error or None}
    if not error:
        values.update(status="delivered", delivered_at=now, next_attempt_at=None)
    elif (now - claimed.created_at).total_seconds() >= settings.webhook_retry_for_s:
        values.update(status="failed", next_attempt_at=None)
    else:
        delay = retry_delay(settings, claimed.attempt)
        values.update(next_attempt_at=now + timedelta(seconds=delay))
    with unit_of_work() as session:
        # Only the attempt that claimed it writes its outcome.
        session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.seq == claimed.seq,
                WebhookDelivery.status == "pending",
                WebhookDelivery.attempts == claimed.attempt,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )


def _attempt(client: httpx.Client, settings: Settings, seq: int, attempts: int) -> bool:
    claimed = _claim(seq, attempts)
    if claimed is None:
        return False
    code, error = _post(client, settings, claimed)
    if error:
        log.info("webhook %s attempt %d failed: %s", claimed.msg_id, claimed.attempt, error)
    _record(settings, claimed, code, error)
    return True


def deliver_due(
    settings: Settings | None = None,
    *,
    client: httpx.Client | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> int:
    """Send every delivery due now (one attempt each). Returns how many were attempted."""
    settings = settings or get_settings()
    due = _due(utcnow())
    if not due:
        return 0
    own_client = client is None
    http = client or httpx.Client(timeout=TIMEOUT_S, follow_redirects=False)
    try:
        if pool is None:
            return sum(_attempt(http, settings, seq, n) for seq, n in due)
        return sum(pool.map(lambda item: _attempt(http, settings, *item), due))
    finally:
        if own_client:
            http.close()


def run_sender(stop: threading.Event) -> None:
    """Deliver due webhooks every EMBEDTUNE_WEBHOOK_SEND_INTERVAL_S until `stop` is set; right
    away again after a round that sent something (the next of a job's deliveries is due)."""
    settings = get_settings()
    with (
        httpx.Client(timeout=TIMEOUT_S, follow_redirects=False) as client,
        ThreadPoolExecutor(SENDERS, thread_name_prefix="webhook") as pool,
    ):
        wait = settings.webhook_send_interval_s
        while not stop.wait(wait):
            try:
                sent = deliver_due(settings, client=client, pool=pool)
            except Exception:
                log.exception("webhook delivery failed; will retry")
                sent = 0
            wait = 0.0 if sent else settings.webhook_send_interval_s
