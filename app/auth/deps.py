"""The caller: `TeamDep` for team routes (a team API key), `AdminDep` for /admin routes."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth.models import Team
from app.auth.service import authenticate
from app.db.session import unit_of_work
from app.deps import SettingsDep
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


def team_for_key(key: str | None) -> Team:
    """The team whose API key is `key`. 401 unauthorized without a valid key.

    Authenticates in its own short transaction (it also stamps the key's last use), so the
    team it returns stays readable whatever the route's own transaction does.
    """
    if not key:
        raise Unauthorized(
            "this endpoint needs an API key: send the header `Authorization: Bearer <key>` "
            "(create a key with `embedtune keys create --team NAME`)"
        )
    with unit_of_work() as session:
        found = authenticate(session, key)
    if found is None:
        raise Unauthorized("the API key is not valid: it is unknown or has been revoked")
    return found[0]


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


def current_team(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_api_key)],
) -> Team:
    """The caller's team: the one app.security.guard authenticated before the body was read
    (the same check again when the app runs without it)."""
    team = getattr(request.state, AUTHENTICATED_TEAM, None)
    if isinstance(team, Team):
        return team
    return team_for_key(credentials.credentials if credentials else None)


TeamDep = Annotated[Team, Depends(current_team)]


def require_admin(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_token)],
) -> None:
    """The admin token, checked (app.security.guard checked it before the body was read)."""
    check_admin_token(settings, credentials.credentials if credentials else None)


AdminDep = Depends(require_admin)
