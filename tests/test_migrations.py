"""Alembic is the only way the schema is made: upgrade, downgrade to base, upgrade again."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from app.auth import models as _auth  # noqa: F401
from app.datasets import models as _datasets  # noqa: F401
from app.db.base import Base
from app.idempotency import models as _idempotency  # noqa: F401
from app.jobs import models as _jobs  # noqa: F401
from app.webhooks import models as _webhooks  # noqa: F401
from app.workers import models as _workers  # noqa: F401
from tests.support.services import base_env, python_cli


def _migrate(url: str, *args: str) -> None:
    env = base_env(database_url=url)
    result = subprocess.run(python_cli("migrate", *args), env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _check_round_trip(url: str) -> None:
    _migrate(url)
    tables = _tables(url)
    assert {"datasets", "jobs", "alembic_version"} <= tables
    engine = create_engine(url)
    try:
        inspector = inspect(engine)
        for table in Base.metadata.sorted_tables:
            migrated = {c["name"] for c in inspector.get_columns(table.name)}
            assert migrated == {c.name for c in table.columns}, table.name
    finally:
        engine.dispose()
    _migrate(url, "--downgrade", "base")
    assert _tables(url) <= {"alembic_version"}
    _migrate(url)
    assert {"datasets", "jobs"} <= _tables(url)


def test_postgres_upgrade_downgrade_upgrade(postgres_url: str) -> None:
    _check_round_trip(postgres_url)


def test_sqlite_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    _check_round_trip(f"sqlite:///{tmp_path / 'embedtune.db'}")


@pytest.mark.parametrize("dialect", ["postgres", "sqlite"])
def test_models_match_migrations(dialect: str, postgres_url: str, tmp_path: Path) -> None:
    """No model change without a migration: autogenerate finds nothing to do at head."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    url = postgres_url if dialect == "postgres" else f"sqlite:///{tmp_path / 'e.db'}"
    _migrate(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
