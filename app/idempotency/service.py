"""Idempotency-Key: the first response to a create request, replayed for its retries.

A route that accepts the header does, in one transaction:

1. `find()`: a live key row for (scope, key)? Same request hash: replay its stored response and
   create nothing. Different hash: 422 `idempotency_key_reused`. An expired row is deleted, so
   the key counts as new.
2. create the resource as usual (flushed, not committed);
3. `save()`: insert the key row with the response. The unique (scope, key) constraint decides
   between concurrent duplicates: on PostgreSQL the loser's insert waits for the winner's commit
   and then fails; `save()` rolls the loser's transaction back (its resource with it) and returns
   the winner's stored response to replay instead.

Only successful creates are stored: a request that fails (422, 413, ...) rolls back and leaves no
key, so the client can fix it or retry with the same key.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, Response
from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.errors import Conflict, ValidationFailed
from app.idempotency.models import IdempotencyKey

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
REPLAY_HEADER = "Idempotent-Replayed"

HEADER_DESCRIPTION = (
    "Makes this create safe to retry. 1-255 visible ASCII characters (no spaces), e.g. a UUID "
    "the client makes once per resource it wants. A retry with the same key and the same body "
    "returns the original response (status and body, header `Idempotent-Replayed: true`) and "
    "creates nothing; the same key with a different body is rejected with 422 "
    "`idempotency_key_reused`. Keys are kept at least 24 hours (setting "
    "EMBEDTUNE_IDEMPOTENCY_TTL_S); after that a key counts as new."
)


def scope(operation: str, team_id: str | None = None) -> str:
    """The namespace a key lives in, e.g. "POST /jobs for team_...": one key may be used on
    each endpoint, and by each team (two teams picking the same key never see each other's
    response). The one place a scope is built."""
    return operation if team_id is None else f"{operation} for {team_id}"


def check_key(value: str | None) -> str | None:
    """The header's value, or None when absent. 422 `idempotency_key_invalid` when malformed."""
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_KEY_LENGTH or not all(33 <= ord(c) <= 126 for c in value):
        raise ValidationFailed(
            f"{HEADER} header: must be 1-{MAX_KEY_LENGTH} visible ASCII characters (letters, "
            "digits, punctuation; no spaces), for example a UUID; send a new valid key",
            {"field": HEADER, "location": "header"},
            code="idempotency_key_invalid",
        )
    return value


def _key_header(
    value: Annotated[str | None, Header(alias=HEADER, description=HEADER_DESCRIPTION)] = None,
) -> str | None:
    return check_key(value)


IdempotencyKeyDep = Annotated[str | None, Depends(_key_header)]


def hash_request(body: Any) -> str:
    """SHA-256 of a JSON-able request, independent of key order and whitespace."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class IdempotentRequest:
    scope: str
    key: str
    request_hash: str


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: str  # the JSON text as first sent (a JSON string in the row: JSONB reorders keys)
    resource_id: str | None

    def replay(self, headers: dict[str, str] | None = None) -> Response:
        """The original response again, byte for byte, marked `Idempotent-Replayed: true`."""
        return Response(
            self.body,
            status_code=self.status_code,
            media_type="application/json",
            headers={**(headers or {}), REPLAY_HEADER: "true"},
        )


def request_for(
    operation: str, key: str | None, body: Any, *, team_id: str | None = None
) -> IdempotentRequest | None:
    """None without a key; otherwise the request as stored: scope (the operation and the
    caller's team), key and body hash."""
    if key is None:
        return None
    return IdempotentRequest(scope(operation, team_id), key, hash_request(body))


def find(
    session: Session, request: IdempotentRequest, *, now: datetime | None = None
) -> StoredResponse | None:
    """The stored response for this key, if it is live and was made by the same request.

    Raises 422 `idempotency_key_reused` when the key was used with a different body. An expired
    row is deleted (in the caller's transaction) so the key can be used again.
    """
    now = now or utcnow()
    row = session.scalars(
        select(IdempotencyKey).where(
            IdempotencyKey.scope == request.scope, IdempotencyKey.key == request.key
        )
    ).one_or_none()
    if row is None:
        return None
    if row.expires_at <= now:
        session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.id == row.id, IdempotencyKey.expires_at <= now
            )
        )
        return None
    if row.request_hash != request.request_hash:
        raise ValidationFailed(
            f"{HEADER} '{request.key}' was already used for a different request to "
            f"{request.scope}; send a new key for a new request, or repeat the original "
            "request unchanged to get its response",
            {
                "field": HEADER,
                "location": "header",
                "resource_id": row.resource_id,
                "expires_at": row.expires_at.isoformat(),
            },
            code="idempotency_key_reused",
        )
    return StoredResponse(row.status_code, str(row.response), row.resource_id)


def save(
    session: Session,
    request: IdempotentRequest,
    *,
    status_code: int,
    body: BaseModel,
    resource_id: str | None,
    ttl_s: int,
    now: datetime | None = None,
) -> StoredResponse | None:
    """Store the response of a request that created `resource_id`, in the caller's transaction.

    Returns None when this request is the first. When a concurrent duplicate committed the same
    key first, rolls the caller's transaction back (the resource it created goes with it) and
    returns the winner's response to replay (or raises 422 if the winner's body differed).
    """
    now = now or utcnow()
    session.add(
        IdempotencyKey(
            scope=request.scope,
            key=request.key,
            request_hash=request.request_hash,
            status_code=status_code,
            # Rendered as FastAPI renders a response_model, so a replay is byte for byte the same.
            response=body.model_dump_json(by_alias=True),
            resource_id=resource_id,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
        )
    )
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        log.info(
            "concurrent duplicate of %s key %r: replaying the first", request.scope, request.key
        )
        winner = find(session, request)
        if winner is None:  # the winner's row vanished (purged) between the two statements
            raise Conflict(
                f"a concurrent request with the same {HEADER} did not finish; retry",
                {"field": HEADER, "location": "header"},
                code="idempotency_key_in_use",
            ) from None
        return winner
    return None


def purge_expired(session: Session, *, now: datetime | None = None) -> int:
    """Delete the keys whose time is up (in the caller's transaction). Returns how many."""
    result = session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.expires_at <= (now or utcnow()))
    )
    return int(getattr(result, "rowcount", 0) or 0)
