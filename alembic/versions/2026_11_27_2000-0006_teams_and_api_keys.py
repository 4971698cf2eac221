"""teams and API keys; datasets and jobs belong to a team

Rows from before teams existed are given to a team named "default", created here only when
there are such rows, so nothing is lost: `embedtune keys create --team default` gives access.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 20:00:00
"""

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
WHEN = sa.DateTime(timezone=True)
DEFAULT_TEAM = "default"


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("limits", JSON, nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams")),
        sa.UniqueConstraint("name", name=op.f("uq_teams_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("revoked_at", WHEN, nullable=True),
        sa.Column("last_used_at", WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_api_keys_team_id_teams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_index("ix_api_keys_team_id", "api_keys", ["team_id"])

    conn = op.get_bind()
    existing = sum(
        conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
        for table in ("datasets", "jobs")
    )
    default_id = None
    if existing:
        default_id = f"team_{secrets.token_hex(12)}"
        conn.execute(
            sa.text("INSERT INTO teams (id, name, created_at) VALUES (:id, :name, :at)"),
            {"id": default_id, "name": DEFAULT_TEAM, "at": datetime.now(UTC)},
        )
    for table in ("datasets", "jobs"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("team_id", sa.String(length=40), nullable=True))
        if default_id is not None:
            conn.execute(sa.text(f"UPDATE {table} SET team_id = :t"), {"t": default_id})
        with op.batch_alter_table(table) as batch:
            batch.alter_column("team_id", existing_type=sa.String(length=40), nullable=False)
            batch.create_foreign_key(
                op.f(f"fk_{table}_team_id_teams"), "teams", ["team_id"], ["id"]
            )
            batch.create_index(f"ix_{table}_team_id_created_at", ["team_id", "created_at"])


def downgrade() -> None:
    for table in ("jobs", "datasets"):
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_team_id_created_at")
            batch.drop_constraint(op.f(f"fk_{table}_team_id_teams"), type_="foreignkey")
            batch.drop_column("team_id")
    op.drop_index("ix_api_keys_team_id", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("teams")
