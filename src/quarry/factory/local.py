"""Local mode: a folder on this machine is the workspace (and its own truth)."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import Engine

from quarry.factory.compiler import CompileResult, compile_workspace
from quarry.store.objects import ObjectStore
from quarry.store.workspaces import WorkspaceRow, register_workspace


def workspace_name_for(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.resolve().name).strip("-.")
    return name or "workspace"


def register_local(engine: Engine, tenant_id: str, path: Path, name: str | None) -> WorkspaceRow:
    return register_workspace(
        engine,
        tenant_id=tenant_id,
        name=name or workspace_name_for(path),
        source_kind="path",
        source=str(path.resolve()),
    )


def compile_local(
    engine: Engine, store: ObjectStore, tenant_id: str, path: Path, name: str | None = None
) -> CompileResult:
    workspace = register_local(engine, tenant_id, path, name)
    return compile_workspace(engine, store, workspace, path)
