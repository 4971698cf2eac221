"""The caller: `TeamDep` for team routes (a team API key), `AdminDep` for /admin routes."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth.models import Team
from app.auth.service import authenticate
from app.db.session import unit_of_work
from app.deps import SettingsDep
from app.errors import Forbidden, Unauthorized

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

# Sent with every 401 (app.errors.Unauthorized).
WWW_AUTHENTICATE_HEADER: dict[str, Any] = {
    "WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}
}
UNAUTHORIZED_RESPONSE: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "No `Authorization: Bearer` header, or an unknown or revoked key",
        "headers": WWW_AUTHENTICATE_HEADER,
    }
}


def current_team(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_api_key)],
) -> Team:
    """The team whose API key the request carries. 401 unauthorized without a valid key.

    Authenticates in its own short transaction (it also stamps the key's last use), so the
    team it returns stays readable whatever the route's own transaction does.
    """
    if credentials is None:
        raise Unauthorized(
            "this endpoint needs an API key: send the header `Authorization: Bearer <key>` "
            "(create a key with `embedtune keys create --team NAME`)"
        )
    with unit_of_work() as session:
        found = authenticate(session, credentials.credentials)
    if found is None:
        raise Unauthorized("the API key is not valid: it is unknown or has been revoked")
    return found[0]


TeamDep = Annotated[Team, Depends(current_team)]


def require_admin(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_token)],
) -> None:
    """Passes with the admin token. 403 admin_disabled when no token is configured, 401 with a
    missing or wrong token."""
    if settings.admin_token is None or not settings.admin_token.get_secret_value():
        raise Forbidden(
            "the admin API is disabled on this server (setting EMBEDTUNE_ADMIN_TOKEN is unset); "
            "manage teams and keys with `embedtune keys`",
            code="admin_disabled",
        )
    expected = settings.admin_token.get_secret_value().encode()
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), expected):
        raise Unauthorized("the admin endpoints need `Authorization: Bearer <admin token>`")


AdminDep = Depends(require_admin)
