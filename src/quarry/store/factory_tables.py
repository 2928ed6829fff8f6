"""The Factory's compile status: what the last compile of each working copy did.

One row per (workspace, branch): the default branch and every branch the Factory has
compiled a draft revision for. The Factory writes it; any replica reads it (FleetOk),
so an editor can see why a change did not go live even when the Factory is busy or
down. ``problems`` is the JSON list of ``{path, line, column, message}`` of a failed
compile. The working copy itself stays in git: this is status, not a second truth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    ForeignKey,
    String,
    Table,
    Text,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from quarry.core.clock import utcnow
from quarry.store.tables import ID, definitions, metadata, revision_files, revisions, workspaces
from quarry.store.types import UtcDateTime

COMPILE_STATES = ("pending", "compiling", "succeeded", "failed")

compile_status = Table(
    "compile_status",
    metadata,
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    Column("branch", String(200), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("revision_id", ID, nullable=True),
    Column("promoted", Boolean, nullable=False, server_default=text("false")),
    Column("draft", Boolean, nullable=False, server_default=text("false")),
    Column("git_commit", String(64), nullable=True),
    Column("error", Text, nullable=True),
    Column("problems", Text, nullable=True),
    Column("requested_at", UtcDateTime(), nullable=True),
    Column("started_at", UtcDateTime(), nullable=True),
    Column("finished_at", UtcDateTime(), nullable=True),
    Column("updated_at", UtcDateTime(), nullable=False),
)


@dataclass(frozen=True)
class CompileStatusRow:
    workspace_id: str
    branch: str
    state: str
    revision_id: str | None
    promoted: bool
    draft: bool
    git_commit: str | None
    error: str | None
    problems: list[dict[str, Any]]
    requested_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "branch": self.branch,
            "state": self.state,
            "revision_id": self.revision_id,
            "promoted": self.promoted,
            "draft": self.draft,
            "git_commit": self.git_commit,
            "error": self.error,
            "problems": self.problems,
            "requested_at": iso(self.requested_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "updated_at": iso(self.updated_at),
        }


def _status(r: Any) -> CompileStatusRow:
    m = r._mapping
    return CompileStatusRow(
        workspace_id=m["workspace_id"],
        branch=m["branch"],
        state=m["state"],
        revision_id=m["revision_id"],
        promoted=bool(m["promoted"]),
        draft=bool(m["draft"]),
        git_commit=m["git_commit"],
        error=m["error"],
        problems=json.loads(m["problems"]) if m["problems"] else [],
        requested_at=m["requested_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        updated_at=m["updated_at"],
    )


def upsert(
    conn: Connection, table: Table, row: dict[str, Any], key: list[str], changed: list[str]
) -> None:
    """Insert the row, or update ``changed`` columns of the row with the same key."""
    dialect_insert: Any = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = dialect_insert(table).values(**row)
    stmt = stmt.on_conflict_do_update(
        index_elements=key, set_={c: stmt.excluded[c] for c in changed}
    )
    conn.execute(stmt)


def mark_requested(conn: Connection, workspace_id: str, branch: str) -> None:
    """A compile is due: ``pending`` (the outcome of the previous one is kept)."""
    now = utcnow()
    upsert(
        conn,
        compile_status,
        {
            "workspace_id": workspace_id,
            "branch": branch,
            "state": "pending",
            "requested_at": now,
            "updated_at": now,
        },
        ["workspace_id", "branch"],
        ["state", "requested_at", "updated_at"],
    )


def mark_started(conn: Connection, workspace_id: str, branch: str) -> None:
    now = utcnow()
    upsert(
        conn,
        compile_status,
        {
            "workspace_id": workspace_id,
            "branch": branch,
            "state": "compiling",
            "started_at": now,
            "updated_at": now,
        },
        ["workspace_id", "branch"],
        ["state", "started_at", "updated_at"],
    )


def mark_finished(
    conn: Connection,
    workspace_id: str,
    branch: str,
    *,
    revision_id: str | None,
    promoted: bool,
    draft: bool,
    git_commit: str | None,
    error: str | None = None,
    problems: list[dict[str, Any]] | None = None,
) -> None:
    now = utcnow()
    values = {
        "state": "failed" if error else "succeeded",
        "revision_id": revision_id,
        "promoted": promoted,
        "draft": draft,
        "git_commit": git_commit,
        "error": error,
        "problems": json.dumps(problems) if problems else None,
        "finished_at": now,
        "updated_at": now,
    }
    upsert(
        conn,
        compile_status,
        {"workspace_id": workspace_id, "branch": branch, **values},
        ["workspace_id", "branch"],
        list(values),
    )


def statuses(conn: Connection, workspace_id: str) -> list[CompileStatusRow]:
    rows = conn.execute(
        select(compile_status)
        .where(compile_status.c.workspace_id == workspace_id)
        .order_by(compile_status.c.branch)
    )
    return [_status(r) for r in rows]


def git_workspaces(conn: Connection) -> list[tuple[str, str]]:
    """(tenant_id, name) of every workspace with an origin: what a Factory clones."""
    rows = conn.execute(
        select(workspaces.c.tenant_id, workspaces.c.name)
        .where(workspaces.c.source_kind == "git")
        .order_by(workspaces.c.tenant_id, workspaces.c.name)
    )
    return [(r.tenant_id, r.name) for r in rows]


def workspaces_to_resume(
    conn: Connection, compiler_version: str | None = None
) -> list[tuple[str, str]]:
    """(tenant_id, name) of the git workspaces whose last compile did not finish: no
    ``compile_status`` row at all (registered, never compiled: the Factory stopped in
    between) or a row still ``pending``/``compiling`` (an edit's debounced compile, or
    a compile, that a stop interrupted) — and, given ``compiler_version``, those whose
    current revision another compiler version made (a release that changed what a
    compile produces recompiles every workspace once). The Factory's start-up pass
    compiles only these, so a restart costs one query, not one compile per workspace."""
    unfinished = (
        select(compile_status.c.workspace_id)
        .where(
            compile_status.c.workspace_id == workspaces.c.id,
            compile_status.c.state.in_(("pending", "compiling")),
        )
        .exists()
    )
    anything = (
        select(compile_status.c.workspace_id)
        .where(compile_status.c.workspace_id == workspaces.c.id)
        .exists()
    )
    due = unfinished | ~anything
    if compiler_version is not None:
        due = due | (
            select(revisions.c.revision_id)
            .where(
                revisions.c.workspace_id == workspaces.c.id,
                revisions.c.revision_id == workspaces.c.current_revision_id,
                revisions.c.compiler_version != compiler_version,
            )
            .exists()
        )
    rows = conn.execute(
        select(workspaces.c.tenant_id, workspaces.c.name)
        .where(workspaces.c.source_kind == "git", due)
        .order_by(workspaces.c.tenant_id, workspaces.c.name)
    )
    return [(r.tenant_id, r.name) for r in rows]


def set_default_branch(conn: Connection, workspace_id: str, branch: str) -> None:
    conn.execute(
        update(workspaces)
        .where(workspaces.c.id == workspace_id)
        .values(default_branch=branch, updated_at=utcnow())
    )


def delete_workspace(conn: Connection, workspace_id: str) -> bool:
    """Unregister: revisions, runs and status go with it by cascade; the membership
    tables carry no foreign keys (see ``store.tables``), so they are deleted here."""
    for membership in (definitions, revision_files):
        conn.execute(membership.delete().where(membership.c.workspace_id == workspace_id))
    result = conn.execute(workspaces.delete().where(workspaces.c.id == workspace_id))
    return result.rowcount == 1


def record_provenance(
    conn: Connection, workspace_id: str, revision_id: str, commit: str, branch: str | None
) -> None:
    """A revision first stored from uncommitted edits (a draft) that is now promoted
    from a clean commit records that commit: the content is the same (the id says so),
    only the provenance was unknown when it was stored."""
    conn.execute(
        update(revisions)
        .where(
            revisions.c.workspace_id == workspace_id,
            revisions.c.revision_id == revision_id,
            (revisions.c.git_dirty != 0) | revisions.c.git_commit.is_(None),
        )
        .values(git_commit=commit, git_branch=branch, git_dirty=0)
    )
