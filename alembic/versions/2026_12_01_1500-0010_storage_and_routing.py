"""object storage and routing: a job's recorded model key, its resources and queue; what each
worker has

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        # The store key of the job's model, set by the fenced transaction that marks it
        # succeeded; None before 0010 (the model then lies at jobs/<id>/model.tar.gz).
        batch.add_column(sa.Column("model_key", sa.String(length=500), nullable=True))
        # {"gpu_type": str | None, "gpus": int}; None before 0010 (any type, one device).
        batch.add_column(sa.Column("resources", JSON, nullable=True))
        # The Celery queue the job is sent to; None before 0010 (the default queue).
        batch.add_column(sa.Column("queue", sa.String(length=255), nullable=True))
    with op.batch_alter_table("worker_heartbeats") as batch:
        batch.add_column(sa.Column("gpu_type", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("gpus", sa.Integer(), nullable=False, server_default="1"))
        # Every queue the worker consumes (its own type's and the any-type ones).
        batch.add_column(sa.Column("queues", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("worker_heartbeats") as batch:
        batch.drop_column("queues")
        batch.drop_column("gpus")
        batch.drop_column("gpu_type")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("queue")
        batch.drop_column("resources")
        batch.drop_column("model_key")
