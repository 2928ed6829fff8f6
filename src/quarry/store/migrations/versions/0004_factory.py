"""factory: compile status per workspace and branch

Revision ID: 0004_factory
Revises: 0003_runs
Create Date: 2026-12-01 19:10:00.000000

Origins need no table of their own: a cloud workspace is ``source_kind = 'git'`` with
the origin URL in ``workspaces.source`` and its ``default_branch`` (both columns exist
since 0001). Credentials are settings, never rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_factory"
down_revision = "0003_runs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "compile_status",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("branch", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("revision_id", sa.String(length=64), nullable=True),
        sa.Column("promoted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("draft", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("git_commit", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("problems", sa.Text(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_compile_status_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "branch", name=op.f("pk_compile_status")),
    )


def downgrade() -> None:
    op.drop_table("compile_status")
