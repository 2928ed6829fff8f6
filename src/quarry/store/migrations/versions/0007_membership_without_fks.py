"""membership rows without foreign keys

Revision ID: 0007_membership_without_fks
Revises: 0006_auth
Create Date: 2026-12-01 20:40:00.000000

``definitions`` and ``revision_files`` are written only by the compiler, in the
transaction that inserts their ``revisions`` row (and after their bodies); per-row
foreign-key checks were most of the cost of storing a recompiled revision of a
large workspace. Dropping a constraint is safe for the release before this one
(expand-then-contract: nothing relied on the database refusing a row), and removing
a workspace now deletes its membership rows explicitly.
"""

from __future__ import annotations

from alembic import op

revision = "0007_membership_without_fks"
down_revision = "0006_auth"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("definitions", schema=None) as batch_op:
        batch_op.drop_constraint(
            "fk_definitions_content_hash_definition_bodies", type_="foreignkey"
        )
        batch_op.drop_constraint("fk_definitions_workspace_id_revisions", type_="foreignkey")
    with op.batch_alter_table("revision_files", schema=None) as batch_op:
        batch_op.drop_constraint("fk_revision_files_workspace_id_revisions", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("revision_files", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_revision_files_workspace_id_revisions",
            "revisions",
            ["workspace_id", "revision_id"],
            ["workspace_id", "revision_id"],
            ondelete="CASCADE",
        )
    with op.batch_alter_table("definitions", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_definitions_workspace_id_revisions",
            "revisions",
            ["workspace_id", "revision_id"],
            ["workspace_id", "revision_id"],
            ondelete="CASCADE",
        )
        batch_op.create_foreign_key(
            "fk_definitions_content_hash_definition_bodies",
            "definition_bodies",
            ["content_hash"],
            ["content_hash"],
        )
