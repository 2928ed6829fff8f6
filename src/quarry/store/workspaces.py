"""Queries on tenants and workspaces, including the promotion compare-and-swap."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, insert, select, update

from quarry.core.clock import utcnow
from quarry.core.errors import NotFound, PromotionConflict
from quarry.store.tables import tenants, workspaces


@dataclass(frozen=True)
class WorkspaceRow:
    id: str
    tenant_id: str
    name: str
    source_kind: str
    source: str
    default_branch: str | None
    current_revision_id: str | None
    updated_at: datetime


def _row(r: object) -> WorkspaceRow:
    m = r._mapping  # type: ignore[attr-defined]
    return WorkspaceRow(
        id=m["id"],
        tenant_id=m["tenant_id"],
        name=m["name"],
        source_kind=m["source_kind"],
        source=m["source"],
        default_branch=m["default_branch"],
        current_revision_id=m["current_revision_id"],
        updated_at=m["updated_at"],
    )


def ensure_tenant(conn: Connection, tenant_id: str, name: str | None = None) -> None:
    exists = conn.execute(select(tenants.c.id).where(tenants.c.id == tenant_id)).first()
    if exists is None:
        conn.execute(
            insert(tenants).values(id=tenant_id, name=name or tenant_id, created_at=utcnow())
        )


def register_workspace(
    engine: Engine, *, tenant_id: str, name: str, source_kind: str, source: str
) -> WorkspaceRow:
    """Idempotent: re-registering the same name updates its source and keeps its id."""
    now = utcnow()
    with engine.begin() as conn:
        ensure_tenant(conn, tenant_id)
        found = conn.execute(
            select(workspaces).where(workspaces.c.tenant_id == tenant_id, workspaces.c.name == name)
        ).first()
        if found is None:
            conn.execute(
                insert(workspaces).values(
                    id=uuid.uuid4().hex,
                    tenant_id=tenant_id,
                    name=name,
                    source_kind=source_kind,
                    source=source,
                    created_at=now,
                    updated_at=now,
                )
            )
        elif (found.source_kind, found.source) != (source_kind, source):
            conn.execute(
                update(workspaces)
                .where(workspaces.c.id == found.id)
                .values(source_kind=source_kind, source=source, updated_at=now)
            )
        return get_workspace(conn, tenant_id, name)


def get_workspace(conn: Connection, tenant_id: str, name: str) -> WorkspaceRow:
    row = conn.execute(
        select(workspaces).where(workspaces.c.tenant_id == tenant_id, workspaces.c.name == name)
    ).first()
    if row is None:
        raise NotFound(f"workspace {name!r} not found", workspace=name)
    return _row(row)


def get_workspace_by_id(conn: Connection, workspace_id: str) -> WorkspaceRow:
    row = conn.execute(select(workspaces).where(workspaces.c.id == workspace_id)).first()
    if row is None:
        raise NotFound(f"workspace {workspace_id!r} not found", workspace=workspace_id)
    return _row(row)


def list_workspaces(
    conn: Connection, tenant_id: str, *, limit: int | None = None, after: str | None = None
) -> list[WorkspaceRow]:
    """The tenant's workspaces by name; a keyset page when ``limit`` is given: the
    first ``limit`` whose name sorts after ``after``. Names are unique per tenant and
    ``>`` and ``ORDER BY`` use the same collation, so consecutive pages never repeat
    or skip a workspace, even while others are registered or removed between them
    (the ``(tenant_id, name)`` unique index serves the range scan)."""
    query = select(workspaces).where(workspaces.c.tenant_id == tenant_id)
    if after is not None:
        query = query.where(workspaces.c.name > after)
    query = query.order_by(workspaces.c.name)
    if limit is not None:
        query = query.limit(limit)
    rows = conn.execute(query)
    return [_row(r) for r in rows]


def current_revision_id(conn: Connection, workspace_id: str) -> str | None:
    return conn.execute(
        select(workspaces.c.current_revision_id).where(workspaces.c.id == workspace_id)
    ).scalar_one_or_none()


def promote(conn: Connection, workspace_id: str, *, new: str, expected: str | None) -> None:
    """``current_revision_id := new WHERE current_revision_id = expected`` — or conflict."""
    current = workspaces.c.current_revision_id
    guard = current.is_(None) if expected is None else current == expected
    result = conn.execute(
        update(workspaces)
        .where(workspaces.c.id == workspace_id, guard)
        .values(current_revision_id=new, updated_at=utcnow())
    )
    if result.rowcount != 1:
        actual = current_revision_id(conn, workspace_id)
        raise PromotionConflict(
            f"promotion conflict: the workspace's current revision is {actual!r}, not the "
            f"{expected!r} this compile started from; recompile and try again",
            expected=expected,
            actual=actual,
            attempted=new,
        )
