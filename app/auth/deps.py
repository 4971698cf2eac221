"""The caller: `TeamDep` for team routes (a team API key), `AdminDep` for /admin routes."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth import keys
from app.auth.cache import keys_seen
from app.auth.models import Team
from app.auth.service import authenticate
from app.db.session import commit
from app.deps import SessionDep, SettingsDep
from app.errors import Forbidden, Unauthorized
from app.settings import Settings

_api_key = HTTPBearer(
    scheme_name="ApiKey",
    description="A team's API key: `Authorization: Bearer et_...` (from `embedtune keys create "
    "--team NAME` or POST /admin/teams/{id}/keys).",
    auto_error=False,
)
_admin_token = HTTPBearer(
    scheme_name="AdminToken",
    description="The admin token of the deployment (setting EMBEDTUNE_ADMIN_TOKEN).",
    auto_error=False,
)

# The request.state attribute app.security.guard leaves the authenticated team in.
AUTHENTICATED_TEAM = "team"

# Sent with every 401 (app.errors.Unauthorized).
WWW_AUTHENTICATE_HEADER: dict[str, Any] = {
    "WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}
}
# What app.security.guard may answer on every authenticated route, before the route runs.
UNAUTHORIZED_RESPONSE: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "No `Authorization: Bearer` header, an unknown or revoked key, or a "
        "credential in the query string",
        "headers": WWW_AUTHENTICATE_HEADER,
    },
    413: {"description": "The request body is larger than EMBEDTUNE_MAX_JSON_BYTES"},
    429: {
        "description": "Too many failed authentications from this address "
        "(too_many_auth_failures); retry after `Retry-After` seconds",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}


def missing_key() -> Unauthorized:
    return Unauthorized(
        "this endpoint needs an API key: send the header `Authorization: Bearer <key>` "
        "(create a key with `embedtune keys create --team NAME`)"
    )


def remembered_team(key: str | None) -> Team | None:
    """The team of `key` if this process checked it within EMBEDTUNE_AUTH_CACHE_S (no database
    involved: safe to call from the event loop); None when it must be looked up."""
    return keys_seen.get(keys.hash_key(key)) if key else None


def team_for_key(session: Session, key: str | None, settings: Settings) -> Team:
    """The team whose API key is `key`, checked in the request's `session` (its transaction
    also stamps the key's last use) unless remembered (app.auth.cache). 401 unauthorized
    without a valid key."""
    if not key:
        raise missing_key()
    digest = keys.hash_key(key)
    team = keys_seen.get(digest)
    if team is not None:
        return team
    generation = keys_seen.generation
    found = authenticate(session, key)
    if found is None:
        raise Unauthorized("the API key is not valid: it is unknown or has been revoked")
    team, row = found
    keys_seen.put(digest, team, row.id, settings.auth_cache_s, generation)
    return team


def authenticate_request(session: Session, key: str | None, settings: Settings) -> Team:
    """`team_for_key` in the request's `session`, as the request's first step when the key
    is not remembered: that short transaction (the key's lookup and last-use stamp) ends here,
    so the request holds no pooled connection while it waits for the thread that runs its
    route, which carries on in the same session. Hence one transaction per request whenever
    the key is remembered, two at most once per EMBEDTUNE_AUTH_CACHE_S per key and process."""
    team = team_for_key(session, key, settings)
    commit(session)
    return team


def check_admin_token(settings: Settings, token: str | None) -> None:
    """Passes with the admin token. 403 admin_disabled when no token is configured, 401 with a
    missing or wrong token."""
    if settings.admin_token is None or not settings.admin_token.get_secret_value():
        raise Forbidden(
            "the admin API is disabled on this server (setting EMBEDTUNE_ADMIN_TOKEN is unset); "
            "manage teams and keys with `embedtune keys`",
            code="admin_disabled",
        )
    expected = settings.admin_token.get_secret_value().encode()
    if token is None or not hmac.compare_digest(token.encode(), expected):
        raise Unauthorized("the admin endpoints need `Authorization: Bearer <admin token>`")


async def current_team(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_api_key)],
    session: SessionDep,
    settings: SettingsDep,
) -> Team:
    """The caller's team: the one app.security.guard authenticated before the body was read
    (the same check again, in the request's session, when the app runs without it)."""
    team = getattr(request.state, AUTHENTICATED_TEAM, None)
    if isinstance(team, Team):
        return team
    key = credentials.credentials if credentials else None
    return await run_in_threadpool(authenticate_request, session, key, settings)


TeamDep = Annotated[Team, Depends(current_team)]


def require_admin(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_token)],
) -> None:
    """The admin token, checked (app.security.guard checked it before the body was read)."""
    check_admin_token(settings, credentials.credentials if credentials else None)


AdminDep = Depends(require_admin)
