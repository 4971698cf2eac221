"""Alembic migrations are the only way the schema is made."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

from alembic import command
from app.settings import get_settings


def _alembic_ini() -> Path:
    # The repository (or the image's working directory) holds alembic.ini beside app/.
    for root in (Path(__file__).resolve().parents[1], Path.cwd()):
        if (root / "alembic.ini").is_file():
            return root / "alembic.ini"
    raise FileNotFoundError("alembic.ini not found beside the app package or in the cwd")


def alembic_config(url: str | None = None) -> Config:
    config = Config(str(_alembic_ini()))
    config.set_main_option("sqlalchemy.url", url or get_settings().resolved_database_url)
    config.attributes["configure_logger"] = False
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)
