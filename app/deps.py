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


SessionDep = Annotated[Session, Depends(_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
