"""Saved images, and every user who asked for a build.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "build_requesters",
        sa.Column(
            "build_id",
            sa.String(64),
            sa.ForeignKey("builds.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("user", sa.String(255), primary_key=True),
    )
    op.create_index("ix_build_requesters_user", "build_requesters", ["user"])
    op.execute('INSERT INTO build_requesters (build_id, "user") SELECT id, requester FROM builds')
    op.create_table(
        "saved_images",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("image", sa.String(512), nullable=False),
        sa.Column(
            "build_id",
            sa.String(64),
            sa.ForeignKey("builds.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("created", sa.Float(), nullable=False),
        sa.UniqueConstraint("owner", "name", name="uq_saved_images_owner_name"),
    )
    op.create_index("ix_saved_images_owner", "saved_images", ["owner"])


def downgrade() -> None:
    op.drop_table("saved_images")
    op.drop_table("build_requesters")
