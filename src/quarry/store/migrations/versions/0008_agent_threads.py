"""agent threads and their messages

Revision ID: 0008_agent_threads
Revises: 0007_membership_without_fks
Create Date: 2026-12-05 05:20:00.000000

Conversations with agents (docs/agents.md, "Threads"): a thread per user and agent,
its messages, each reply linked to the run of its turn. New tables only: a release
before this one never reads them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_agent_threads"
down_revision = "0007_membership_without_fks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_threads",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("agent", sa.String(length=500), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_agent_threads_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_agent_threads_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_threads")),
    )
    with op.batch_alter_table("agent_threads", schema=None) as batch_op:
        batch_op.create_index(
            "ix_agent_threads_listing",
            ["tenant_id", "workspace_id", "owner", "updated_at"],
            unique=False,
        )

    op.create_table(
        "agent_messages",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("thread_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("parts", sa.Text(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("output_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["thread_id"],
            ["agent_threads.id"],
            name=op.f("fk_agent_messages_thread_id_agent_threads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_messages")),
        sa.UniqueConstraint("thread_id", "seq", name=op.f("uq_agent_messages_thread_id_seq")),
    )
    with op.batch_alter_table("agent_messages", schema=None) as batch_op:
        batch_op.create_index("ix_agent_messages_run", ["run_id"], unique=False)
        batch_op.create_index("ix_agent_messages_usage", ["tenant_id", "finished_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("agent_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_agent_messages_usage")
        batch_op.drop_index("ix_agent_messages_run")
    op.drop_table("agent_messages")
    with op.batch_alter_table("agent_threads", schema=None) as batch_op:
        batch_op.drop_index("ix_agent_threads_listing")
    op.drop_table("agent_threads")
