"""The compile status document of a workspace: the Factory's latest compile of each
branch, read from the database (``compile_status``) so any replica answers.

One shape for the API route (``GET .../compile/status``) and the IDE's live events,
which stream the same document."""

from __future__ import annotations

from typing import Any

from quarry.catalog.reader import Catalog
from quarry.store import factory_tables as ft
from quarry.store.db import Engine


def compile_status(catalog: Catalog, engine: Engine, tenant: str, workspace: str) -> dict[str, Any]:
    """The workspace (404 through the catalog when the tenant has none by that name),
    its default branch, current revision and one entry per compiled branch."""
    ws = catalog.workspace(tenant, workspace, fresh=True)
    with engine.connect() as conn:
        rows = ft.statuses(conn, ws.id)
    return {
        "workspace": ws.name,
        "default_branch": ws.default_branch,
        "current_revision_id": ws.current_revision_id,
        "branches": [r.to_json() for r in rows],
    }
