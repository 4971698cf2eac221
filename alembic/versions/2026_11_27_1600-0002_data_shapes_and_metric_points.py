"""data shapes (conversion, column mapping, STS) and the training metrics time series

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("stored_format", sa.String(16), nullable=True))
        batch.add_column(sa.Column("column_mapping", JSON, nullable=True))
        batch.add_column(sa.Column("conversion", JSON, nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("sts_dataset", JSON, nullable=True))
        batch.add_column(sa.Column("holdout", JSON, nullable=True))
    op.create_table(
        "job_metric_points",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Float(), nullable=False),
        sa.Column("values", JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_job_metric_points_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_metric_points")),
        sa.UniqueConstraint(
            "job_id", "kind", "step", name=op.f("uq_job_metric_points_job_id_kind_step")
        ),
    )


def downgrade() -> None:
    op.drop_table("job_metric_points")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("holdout")
        batch.drop_column("sts_dataset")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("conversion")
        batch.drop_column("column_mapping")
        batch.drop_column("stored_format")
