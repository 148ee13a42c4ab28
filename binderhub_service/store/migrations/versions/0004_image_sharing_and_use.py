"""Saved images: who may see them, and how often and when they were used.

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("saved_images") as table:
        table.add_column(
            sa.Column("visibility", sa.String(16), nullable=False, server_default="private")
        )
        table.add_column(sa.Column("groups", sa.JSON(), nullable=False, server_default="[]"))
        table.add_column(sa.Column("use_count", sa.Integer(), nullable=False, server_default="0"))
        table.add_column(sa.Column("last_used", sa.Float(), nullable=True))
    op.create_index("ix_saved_images_visibility", "saved_images", ["visibility"])


def downgrade() -> None:
    op.drop_index("ix_saved_images_visibility", "saved_images")
    with op.batch_alter_table("saved_images") as table:
        table.drop_column("last_used")
        table.drop_column("use_count")
        table.drop_column("groups")
        table.drop_column("visibility")
