"""a job's phase and, once it succeeded, where its time went

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        # rules.phases.Phase or the terminal status; None before 0011 (the API derives one
        # from the status).
        batch.add_column(sa.Column("phase", sa.String(length=20), nullable=True))
        # Seconds per phase and the training throughput of the attempt that succeeded;
        # None before 0011 and for jobs that did not succeed.
        batch.add_column(sa.Column("timings", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("timings")
        batch.drop_column("phase")
