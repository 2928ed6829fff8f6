"""``quarry workspace add|list|remove``: register workspaces, here or on a remote Quarry.

Locally (no ``--url``) the commands write the state database the settings name
(``QUARRY_DATABASE_URL``, default SQLite under ``QUARRY_DATA_DIR``); a Factory using
that database clones a new origin at its next start (or on first use). With ``--url``
they call a running Quarry's API with a bearer token (``--token`` or
``QUARRY_TOKEN``); a serve replica forwards registration to the Factory. A local
folder can only be registered locally: an API that let a request name a server path
would expose the server's disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table

from quarry.cli_output import make_console
from quarry.core.errors import BadRequest, QuarryError

console = make_console(stderr=True)
out = make_console()

UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url", help="A remote Quarry (e.g. https://quarry.example.com).", show_default=False
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar="QUARRY_TOKEN", help="API token for --url.", show_default=False),
]


class RemoteError(QuarryError):
    code = "remote_error"


def _remote(
    url: str, token: str | None, method: str, path: str, body: dict[str, Any] | None = None
) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(base_url=url.rstrip("/"), timeout=300, headers=headers) as client:
            got = client.request(method, path, json=body)
    except httpx.HTTPError as exc:
        raise RemoteError(f"cannot reach {url}: {exc}") from None
    if got.status_code >= 400:
        try:
            message = got.json().get("message") or got.text
        except ValueError:
            message = got.text
        raise RemoteError(f"{url} answered {got.status_code}: {message}")
    return got.json() if got.content else None


def _remote_workspaces(url: str, token: str | None) -> list[dict[str, Any]]:
    """Every workspace of the remote list, following its ``next_cursor`` page by page
    (the list answers at most a page per request)."""
    rows: list[dict[str, Any]] = []
    path = "/api/v1/workspaces?limit=1000"
    while True:
        page = _remote(url, token, "GET", path)
        rows.extend(page["workspaces"])
        cursor = page.get("next_cursor")
        if not cursor:
            return rows
        path = f"/api/v1/workspaces?limit=1000&cursor={quote(cursor)}"


def _print_workspaces(rows: list[dict[str, Any]]) -> None:
    table = Table("name", "kind", "default branch", "current revision", "source")
    for r in rows:
        table.add_row(
            r["name"],
            r["source_kind"],
            r.get("default_branch") or "",
            r.get("current_revision_id") or "(none)",
            r.get("source", ""),
        )
    out.print(table)


def register(app: typer.Typer, settings_for: Any, fail: Any) -> None:
    workspace_app = typer.Typer(help="Register, list and remove workspaces.", no_args_is_help=True)
    app.add_typer(workspace_app, name="workspace")

    @workspace_app.command("add")
    def add(
        name: Annotated[str, typer.Argument(help="Workspace name (letters, digits, _ . -).")],
        path: Annotated[
            Path | None, typer.Option(help="A local folder (local mode).", show_default=False)
        ] = None,
        origin: Annotated[
            str | None, typer.Option(help="An origin git URL (cloud mode).", show_default=False)
        ] = None,
        branch: Annotated[
            str | None, typer.Option(help="Default branch (default: the origin's HEAD).")
        ] = None,
        url: UrlOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Register a workspace: a local folder (--path) or an origin (--origin)."""
        try:
            if (path is None) == (origin is None):
                raise BadRequest("give exactly one of --path and --origin")
            if url is not None:
                if path is not None:
                    raise BadRequest(
                        "a local folder can only be registered on the Factory's machine "
                        "(run without --url there); register an --origin remotely"
                    )
                body = {"name": name, "origin": origin, "branch": branch}
                got = _remote(url, token, "POST", "/api/v1/workspaces", body)
                out.print(
                    f"registered {got['name']} ({got['default_branch']}) @ "
                    f"{got['current_revision_id']}; compile: {got['compile']['state']}"
                )
                return
            _add_locally(settings_for(None), name, path, origin, branch)
        except QuarryError as exc:
            raise fail(exc) from exc

    @workspace_app.command("list")
    def list_cmd(url: UrlOpt = None, token: TokenOpt = None) -> None:
        """List the workspaces of the tenant (the token's, or QUARRY_TENANT locally)."""
        try:
            if url is not None:
                _print_workspaces(_remote_workspaces(url, token))
                return
            from quarry.node.services import build_services

            settings = settings_for(None)
            svc = build_services(settings)
            try:
                rows = svc.catalog.list_workspaces(settings.tenant)
            finally:
                svc.close()
            _print_workspaces(
                [
                    {
                        "name": r.name,
                        "source_kind": r.source_kind,
                        "default_branch": r.default_branch,
                        "current_revision_id": r.current_revision_id,
                        "source": r.source,
                    }
                    for r in rows
                ]
            )
        except QuarryError as exc:
            raise fail(exc) from exc

    @workspace_app.command("remove")
    def remove(
        name: Annotated[str, typer.Argument(help="Workspace name.")],
        url: UrlOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Unregister a workspace: its revisions and runs go; a local folder stays."""
        try:
            if url is not None:
                _remote(url, token, "DELETE", f"/api/v1/workspaces/{name}")
            else:
                from quarry.factory.workspaces import unregister
                from quarry.node.services import build_services

                settings = settings_for(None)
                svc = build_services(settings)
                try:
                    ws = svc.catalog.workspace(settings.tenant, name, fresh=True)
                    unregister(svc.engine, ws, settings.workspaces_dir)
                finally:
                    svc.close()
            out.print(f"removed {name}")
        except QuarryError as exc:
            raise fail(exc) from exc


def _add_locally(
    settings: Any, name: str, path: Path | None, origin: str | None, branch: str | None
) -> None:
    from quarry.factory import workspaces as fw
    from quarry.node.services import build_services

    svc = build_services(settings)
    try:
        if path is not None:
            row = fw.register_path(svc.engine, settings.tenant, name, path)
            out.print(f"registered {row.name}: folder {row.source}")
        else:
            assert origin is not None
            row = fw.register_origin(
                svc.engine, settings.tenant, name, origin, branch=branch, allow_local=True
            )
            out.print(
                f"registered {row.name}: origin {row.source}; the Factory clones it at its "
                "next start"
            )
    finally:
        svc.close()
