"""task positions by source hash

Revision ID: 0009_task_positions
Revises: 0008_agent_threads
Create Date: 2026-12-05 12:40:00.000000

Where each task of a workflow or app starts in its file, so a failed step names its
task's own ``file:line`` (docs/web.md, "Runs"). A new table only: a release before
this one never reads it, and revisions compiled before it fall back to the line of
the task's first reference.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_task_positions"
down_revision = "0008_agent_threads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_positions",
        sa.Column("source_hash", sa.String(length=64), nullable=False),
        sa.Column("positions", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("source_hash", name=op.f("pk_task_positions")),
    )


def downgrade() -> None:
    op.drop_table("task_positions")
