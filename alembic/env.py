"""Alembic environment: the URL comes from the config (set by `embedtune migrate`) or Settings."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from app.auth import models as _auth  # noqa: F401
from app.datasets import models as _datasets  # noqa: F401  (registers tables)
from app.db.base import Base
from app.db.session import make_engine
from app.idempotency import models as _idempotency  # noqa: F401
from app.jobs import models as _jobs  # noqa: F401
from app.settings import get_settings
from app.webhooks import models as _webhooks  # noqa: F401
from app.workers import models as _workers  # noqa: F401

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().resolved_database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_url(), pooled=False)
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # Batch migrations copy a table, drop it and rename the copy; with foreign keys on,
            # dropping `jobs` would cascade to its events and metric points. The pragma only
            # takes effect outside a transaction, hence the commit.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
