"""Why each failed build failed: its failure class.

Records written before it get a class from what they recorded: cancelled
builds ``cancelled``, builds a restart cut short ``interrupted``, builds
stopped at the build timeout ``timeout``, other failed builds ``unknown``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("builds", sa.Column("failure_class", sa.String(32), nullable=True))
    op.create_index("ix_builds_failure_class", "builds", ["failure_class"])
    builds = sa.table(
        "builds",
        sa.column("state", sa.String),
        sa.column("failure_reason", sa.Text),
        sa.column("failure_class", sa.String),
    )
    op.execute(
        builds.update().where(builds.c.state == "cancelled").values(failure_class="cancelled")
    )
    failed = builds.c.state == "failed"
    op.execute(
        builds.update()
        .where(failed, builds.c.failure_reason == "interrupted by service restart")
        .values(failure_class="interrupted")
    )
    op.execute(
        builds.update()
        .where(failed, builds.c.failure_reason.like("The build took longer than %"))
        .values(failure_class="timeout")
    )
    op.execute(
        builds.update()
        .where(failed, builds.c.failure_class.is_(None))
        .values(failure_class="unknown")
    )


def downgrade() -> None:
    op.drop_index("ix_builds_failure_class", table_name="builds")
    op.drop_column("builds", "failure_class")
