"""The line ``quarry serve`` prints about authentication, and why it is what it is.

Whether a process is open is decided by :func:`quarry.api.auth.decide_open`; with
``QUARRY_AUTH=auto`` (the default) a local SQLite instance is open only while it has
no active token, so creating a token silently closed it. The banner says which mode
is in force and why, and what to do about it, so nobody meets an unexplained 401.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from quarry.core.settings import Settings


def auth_banner(settings: Settings, application: Any) -> str:
    """One or two lines: ``auth: open|tokens`` and the reason, from the running app."""
    authenticator = getattr(application.state, "authenticator", None)
    is_open = bool(getattr(authenticator, "open", False))
    tenant = settings.tenant
    if is_open:
        why = (
            "QUARRY_AUTH=open"
            if settings.auth == "open"
            else "a local SQLite instance with no active token"
        )
        return (
            f"auth: [bold yellow]open[/bold yellow] ({why}): every request is an admin of "
            f"tenant {tenant!r}; keep this port private. Creating a token "
            "(quarry tokens create) closes it."
        )
    if settings.auth == "tokens":
        why = "QUARRY_AUTH=tokens"
    elif settings.role.value != "all":
        why = f"role {settings.role.value} always requires tokens"
    elif settings.database_url and not settings.database_url.startswith("sqlite"):
        why = "a shared database always requires tokens"
    else:
        why = "this local instance has active tokens (quarry tokens list; revoking them reopens it)"
    return (
        f"auth: [bold]tokens[/bold] ({why}): send Authorization: Bearer qk_…; "
        f"workspaces compiled here belong to tenant {tenant!r}, so use a token of that tenant."
    )


def app_urls(svc: Any, settings: Settings, workspace: str, base_url: str) -> list[str]:
    """The dashboard page of every app of ``workspace``'s current revision: the start
    page used to be the only thing printed, and it lists raw JSON links."""
    ws = svc.catalog.workspace(settings.tenant, workspace, fresh=True)
    if ws.current_revision_id is None:
        return []
    listing = json.loads(svc.catalog.definitions(ws, ws.current_revision_id, "app").body)
    urls = []
    for definition in listing["definitions"]:
        stem = PurePosixPath(definition["path"]).name
        for suffix in (".app.yml", ".app.yaml"):
            stem = stem.removesuffix(suffix)
        urls.append(f"{base_url.rstrip('/')}/workspaces/{quote(ws.name)}/apps/{quote(stem)}")
    return urls
