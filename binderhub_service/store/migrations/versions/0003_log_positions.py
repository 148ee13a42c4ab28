"""Where each log event came from in its executor's own log, for resuming after a restart.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("build_events") as batch:
        batch.add_column(sa.Column("log_position", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("build_events") as batch:
        batch.drop_column("log_position")
