"""The state schema, declared once; Alembic migrations must replay to exactly this.

Compiled definitions live in one ``definitions`` table with a ``kind`` column rather
than a table per kind: every kind is read the same way (by workspace, revision, kind
and name), and a new kind then needs no migration. Bodies are content-addressed in
``definition_bodies`` so a revision that changes one file re-inserts only small
membership rows for the other definitions, never their bodies.

The membership tables (``definitions``, ``revision_files``) carry no foreign keys
(migration 0007): they are written only by the compiler, in the same transaction
as their ``revisions`` row and after their bodies, and a recompile of a large
workspace writes tens of thousands of them, where per-row foreign-key checks were
most of the insert's cost. Removing a workspace deletes them explicitly
(``store.factory_tables.delete_workspace``) instead of by cascade.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from quarry.store.types import UtcDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

HASH = String(64)
ID = String(64)

tenants = Table(
    "tenants",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("source_kind", String(16), nullable=False),
    Column("source", Text, nullable=False),
    Column("default_branch", String(200), nullable=True),
    Column("current_revision_id", ID, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    UniqueConstraint("tenant_id", "name"),
)

revisions = Table(
    "revisions",
    metadata,
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    Column("revision_id", ID, primary_key=True),
    Column("git_commit", String(64), nullable=True),
    Column("git_branch", String(200), nullable=True),
    Column("git_dirty", Integer, nullable=False, server_default="0"),
    Column("definition_count", Integer, nullable=False),
    Column("file_count", Integer, nullable=False),
    Column("compiler_version", String(32), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

definition_bodies = Table(
    "definition_bodies",
    metadata,
    Column("content_hash", HASH, primary_key=True),
    Column("body", Text, nullable=False),
    Column("refs", Text, nullable=False),
)

# Where each task of a workflow or app starts in its file ({"tasks.0": [line,
# column], ...}, quarry.definitions.task_positions), by the file's source hash:
# positions depend on the file's bytes, not on its body (a comment line moves every
# task below it and changes no body), so they are not kept with the body.
task_positions = Table(
    "task_positions",
    metadata,
    Column("source_hash", HASH, primary_key=True),
    Column("positions", Text, nullable=False),
)

definitions = Table(
    "definitions",
    metadata,
    Column("workspace_id", ID, primary_key=True),
    Column("revision_id", ID, primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("name", String(500), primary_key=True),
    Column("path", Text, nullable=False),
    Column("source_hash", HASH, nullable=False),
    Column("content_hash", HASH, nullable=False),
)

revision_files = Table(
    "revision_files",
    metadata,
    Column("workspace_id", ID, primary_key=True),
    Column("revision_id", ID, primary_key=True),
    Column("path", String(1000), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("blob_hash", HASH, nullable=False),
    Column("size", BigInteger, nullable=False),
)

blobs = Table(
    "blobs",
    metadata,
    Column("tenant_id", ID, ForeignKey("tenants.id"), primary_key=True),
    Column("hash", HASH, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

Index(
    "ix_definitions_path", definitions.c.workspace_id, definitions.c.revision_id, definitions.c.path
)
Index("ix_revisions_created", revisions.c.workspace_id, revisions.c.created_at)
