"""An app definition of a revision as its typed model (parsed once per revision)."""

from __future__ import annotations

import json
from typing import cast

from quarry.catalog.cache import LruCache
from quarry.catalog.reader import Catalog
from quarry.core.errors import NotFound
from quarry.definitions.kinds import Kind
from quarry.definitions.models.app import AppConfig
from quarry.definitions.parse import load_model
from quarry.store.workspaces import WorkspaceRow

_APPS: LruCache[tuple[str, str, str], AppConfig] = LruCache(256)


def load_app(catalog: Catalog, workspace: WorkspaceRow, revision_id: str, name: str) -> AppConfig:
    """Raise ``NotFound`` when the revision has no app ``name``."""
    key = (workspace.id, revision_id, name)
    app = _APPS.get(key)
    if app is None:
        doc = catalog.definition(workspace, revision_id, "app", name)
        body = json.loads(doc.body)["body"]
        app = cast(AppConfig, load_model(Kind.APP, body))
        _APPS.put(key, app)
    return app


def find_app_name(catalog: Catalog, workspace: WorkspaceRow, revision_id: str, name: str) -> str:
    """``sales_overview`` finds ``apps/sales_overview`` when no app has the short name."""
    for candidate in (name, f"apps/{name}"):
        try:
            load_app(catalog, workspace, revision_id, candidate)
        except NotFound:
            continue
        return candidate
    raise NotFound(
        f"no app named {name!r} in revision {revision_id} of workspace {workspace.name!r}",
        kind="app",
        name=name,
        revision=revision_id,
    )
