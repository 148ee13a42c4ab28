"""Build records and their event logs.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "builds",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("requester", sa.String(255), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("repo_url", sa.Text(), nullable=False),
        sa.Column("image_name", sa.String(512), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("started", sa.Float(), nullable=True),
        sa.Column("finished", sa.Float(), nullable=True),
        sa.Column("queue_wait", sa.Float(), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("phase_times", sa.JSON(), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("executor", sa.String(64), nullable=False),
        sa.Column("builder_version", sa.String(64), nullable=False),
    )
    op.create_index("ix_builds_requester", "builds", ["requester"])
    op.create_index("ix_builds_repo_url", "builds", ["repo_url"])
    op.create_index("ix_builds_image_name", "builds", ["image_name"])
    op.create_index("ix_builds_state", "builds", ["state"])
    op.create_index("ix_builds_created", "builds", ["created"])
    op.create_table(
        "build_events",
        sa.Column(
            "build_id",
            sa.String(64),
            sa.ForeignKey("builds.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("number", sa.Integer(), primary_key=True),
        sa.Column("data", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("build_events")
    op.drop_table("builds")
