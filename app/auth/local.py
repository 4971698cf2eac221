"""The local all-in-one mode's key: made on first start, kept in a 0600 file in the data dir.

The file is the one place a whole key is kept in clear, so that `embedtune local` can say on
every start where the key is (and tests and scripts can read it); the database keeps only its
hash, as for every key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth import service
from app.auth.models import ApiKey

LOCAL_TEAM = "local"
# The team migration 0006 gives rows from before teams: a local install that predates teams
# keeps using its data through it.
LEGACY_TEAM = "default"
KEY_FILE = "api-key"


@dataclass(frozen=True)
class LocalKey:
    team: str
    path: Path
    key: str | None  # set only when this start made the key
    file_missing: bool = False  # the team has keys, but their file is gone


def key_file(data_dir: Path) -> Path:
    return data_dir / KEY_FILE


def ensure_local_key(session: Session, data_dir: Path) -> LocalKey:
    """On first start: a team and a key, the key written to `<data dir>/api-key` (0600).
    Later: nothing new; says where the key is."""
    path = key_file(data_dir)
    team = service.find_team(session, LOCAL_TEAM) or service.find_team(session, LEGACY_TEAM)
    if team is None:
        team, _ = service.ensure_team(session, LOCAL_TEAM)
    if path.exists():
        return LocalKey(team.name, path, None)
    active = session.scalars(
        select(ApiKey.id).where(ApiKey.team_id == team.id, ApiKey.revoked_at.is_(None))
    ).first()
    if active is not None:
        return LocalKey(team.name, path, None, file_missing=True)
    created = service.create_key(session, team)
    # O_EXCL: never overwrite a key file; 0600: readable by this user only.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(created.key + "\n")
    return LocalKey(team.name, path, created.key)
