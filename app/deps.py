"""Annotated dependencies so every route reads like its signature."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session

from app.db.session import unit_of_work
from app.settings import Settings, get_settings


def _session() -> Iterator[Session]:
    """One unit of work per request: commit when the route returns, roll back on error."""
    with unit_of_work() as session:
        yield session


# scope="function": the unit of work commits before the response is sent. With the default
# ("request") it would commit after, and a client could act on a 200 (a revoked key, say)
# before the write it reports is visible to its next request.
SessionDep = Annotated[Session, Depends(_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
