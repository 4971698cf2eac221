"""Admin endpoints: teams and their API keys, behind the admin token (setting
EMBEDTUNE_ADMIN_TOKEN). The same operations exist on the CLI as `embedtune keys`."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.auth import service
from app.auth.deps import UNAUTHORIZED_RESPONSE, WWW_AUTHENTICATE_HEADER, AdminDep
from app.auth.models import ApiKey
from app.auth.schemas import (
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyRead,
    TeamCreate,
    TeamLimits,
    TeamList,
    TeamRead,
)
from app.deps import SessionDep
from app.links import links

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[AdminDep],
    responses={
        **UNAUTHORIZED_RESPONSE,
        401: {
            "description": "No admin token, a wrong one, or a credential in the query string",
            "headers": WWW_AUTHENTICATE_HEADER,
        },
        403: {"description": "The admin API is disabled (EMBEDTUNE_ADMIN_TOKEN is unset)"},
    },
)


def _key_read(row: ApiKey) -> ApiKeyRead:
    return ApiKeyRead.model_validate(row, from_attributes=True)


@router.post(
    "/teams",
    status_code=status.HTTP_201_CREATED,
    response_model=TeamRead,
    responses={
        201: links(
            "team_id",
            {
                "CreateKey": ("POST", "/admin/teams/{team_id}/keys"),
                "ListKeys": ("GET", "/admin/teams/{team_id}/keys"),
                "SetTeamLimits": ("PUT", "/admin/teams/{team_id}/limits"),
            },
        ),
        409: {"description": "A team with this name exists"},
    },
)
def create_team(payload: TeamCreate, session: SessionDep) -> TeamRead:
    """Create a team. Give it a key with POST /admin/teams/{id}/keys."""
    return TeamRead.model_validate(service.create_team(session, payload.name), from_attributes=True)


@router.get("/teams", response_model=TeamList)
def list_teams(session: SessionDep) -> TeamList:
    """Every team, oldest first."""
    teams = service.list_teams(session)
    return TeamList(data=[TeamRead.model_validate(t, from_attributes=True) for t in teams])


@router.post(
    "/teams/{team_id}/keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    responses={
        201: links("key_id", {"RevokeKey": ("POST", "/admin/keys/{key_id}/revoke")}),
        404: {"description": "Unknown team"},
    },
)
def create_key(team_id: str, session: SessionDep) -> ApiKeyCreated:
    """A new API key for the team. The response is the only time the whole key is shown."""
    created = service.create_key(session, service.get_team(session, team_id))
    return ApiKeyCreated(**_key_read(created.row).model_dump(), key=created.key)


@router.get(
    "/teams/{team_id}/keys",
    response_model=ApiKeyList,
    responses={404: {"description": "Unknown team"}},
)
def list_keys(team_id: str, session: SessionDep) -> ApiKeyList:
    """The team's keys (prefixes only, never a whole key), revoked ones included."""
    team = service.get_team(session, team_id)
    return ApiKeyList(data=[_key_read(k) for k in service.list_keys(session, team.id)])


@router.post(
    "/keys/{key_id}/revoke",
    response_model=ApiKeyRead,
    responses={404: {"description": "Unknown key"}},
)
def revoke_key(key_id: str, session: SessionDep) -> ApiKeyRead:
    """Revoke a key (by id or prefix): its next request gets 401. Revoking twice is harmless."""
    return _key_read(service.revoke_key(session, service.find_key(session, key_id)))


@router.put(
    "/teams/{team_id}/limits",
    response_model=TeamRead,
    responses={404: {"description": "Unknown team"}},
)
def set_team_limits(team_id: str, payload: TeamLimits, session: SessionDep) -> TeamRead:
    """Replace the team's own limits; fields left out or null use the server's settings."""
    team = service.get_team(session, team_id)
    service.set_limits(session, team, payload.model_dump(exclude_none=True) or None)
    return TeamRead.model_validate(team, from_attributes=True)
