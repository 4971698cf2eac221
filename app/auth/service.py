"""Teams and API keys: create, list, revoke, and authenticate a presented key.

Services never commit; the caller's unit of work does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth import keys
from app.auth.cache import keys_seen
from app.auth.models import ApiKey, Team
from app.db.base import utcnow
from app.db.session import after_commit
from app.errors import Conflict, NotFound, ValidationFailed
from app.ids import new_id

# last_used_at is written at most this often per key, so reads do not each cost a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class CreatedKey:
    row: ApiKey
    key: str  # the whole key: shown once, never stored


def create_team(session: Session, name: str) -> Team:
    """A new team. 409 team_exists when the name is taken."""
    if find_team(session, name) is not None:
        raise _team_exists(name)
    team = Team(id=new_id("team"), name=name)
    session.add(team)
    try:
        session.flush()
    except IntegrityError:  # created concurrently; the caller's transaction rolls back
        raise _team_exists(name) from None
    return team


def _team_exists(name: str) -> Conflict:
    return Conflict(f"a team named '{name}' exists already", {"name": name}, code="team_exists")


def find_team(session: Session, name: str) -> Team | None:
    return session.scalars(select(Team).where(Team.name == name)).one_or_none()


def ensure_team(session: Session, name: str) -> tuple[Team, bool]:
    """The team named `name`, created when missing. Returns (team, created)."""
    team = find_team(session, name)
    if team is not None:
        return team, False
    return create_team(session, name), True


def get_team(session: Session, team_id: str) -> Team:
    team = session.get(Team, team_id)
    if team is None:
        raise NotFound(f"team '{team_id}' does not exist", {"team": team_id})
    return team


def list_teams(session: Session) -> list[Team]:
    return list(session.scalars(select(Team).order_by(Team.created_at, Team.id)))


def create_key(session: Session, team: Team) -> CreatedKey:
    """A new key for `team`; the returned `key` is the only time the whole key exists."""
    for _ in range(5):  # a prefix collision (32 random bits) is rare; draw again
        new = keys.generate()
        if session.scalars(select(ApiKey.id).where(ApiKey.prefix == new.prefix)).first():
            continue
        row = ApiKey(id=new_id("key"), team_id=team.id, prefix=new.prefix, hash=new.hash)
        session.add(row)
        session.flush()
        return CreatedKey(row=row, key=new.key)
    raise RuntimeError("could not draw an unused API key prefix")


def list_keys(session: Session, team_id: str | None = None) -> list[ApiKey]:
    stmt = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if team_id is not None:
        stmt = stmt.where(ApiKey.team_id == team_id)
    return list(session.scalars(stmt))


def find_key(session: Session, key_id_or_prefix: str) -> ApiKey:
    """A key by its id (`key_...`) or its prefix (`et_...`, or the 8-character public id).

    A whole key is refused (422 key_reference_invalid): a secret passed around to revoke it
    ends up in URLs, logs and shell histories.
    """
    ref = key_id_or_prefix.strip()
    whole = keys.prefix_of(ref)
    if whole is not None:
        raise ValidationFailed(
            f"name the key by its id (key_...) or its prefix ({whole}), never the whole key; "
            "the key you sent may now be in logs: revoke it",
            {"key": whole},
            code="key_reference_invalid",
        )
    prefix = ref if ref.startswith(f"{keys.SCHEME}_") else None
    candidates = [ref, prefix or f"{keys.SCHEME}_{ref}"]
    row = session.scalars(
        select(ApiKey).where(or_(ApiKey.id == ref, ApiKey.prefix.in_(candidates)))
    ).first()
    if row is None:
        shown = prefix or ref[:40]
        raise NotFound(f"API key '{shown}' does not exist", {"key": shown})
    return row


def revoke_key(session: Session, row: ApiKey) -> ApiKey:
    """Revoke a key (its next request gets 401: at once in this process, within
    EMBEDTUNE_AUTH_CACHE_S in others). Revoking a revoked key changes nothing."""
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    # Once committed: forgotten any earlier, a request could remember the key valid again.
    key_id = row.id
    after_commit(session, lambda: keys_seen.forget(key_id=key_id))
    return row


def set_limits(session: Session, team: Team, limits: dict[str, Any] | None) -> Team:
    """Replace the team's own limits (None: the settings'); its requests see them at once in
    this process, within EMBEDTUNE_AUTH_CACHE_S in others (app.auth.cache keeps the team)."""
    team.limits = limits
    session.flush()
    team_id = team.id
    after_commit(session, lambda: keys_seen.forget(team_id=team_id))
    return team


def authenticate(session: Session, presented: str) -> tuple[Team, ApiKey] | None:
    """The team and key of a presented key; None when it is malformed, unknown or revoked."""
    prefix = keys.prefix_of(presented)
    if prefix is None:
        return None
    row = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()
    if row is None or not keys.matches(presented, row.hash) or row.revoked_at is not None:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        row.last_used_at = now
    team = session.get(Team, row.team_id)
    if team is None:
        return None
    return team, row
