"""``quarry fleet up``: a Factory, serve replicas and workers on this machine."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from quarry.cli_output import make_console
from quarry.core.errors import ConfigurationError
from quarry.core.logs import configure_logging

console = make_console(stderr=True)
out = make_console()


def register(app: typer.Typer, settings_for: Any, fail: Any) -> None:
    fleet = typer.Typer(help="Run a split fleet locally (Factory, serve replicas, workers).")
    app.add_typer(fleet, name="fleet")

    @fleet.command()
    def up(
        serve: Annotated[int, typer.Option("--serve", min=1, help="Serve replicas.")] = 2,
        workers: Annotated[int, typer.Option("--workers", min=0, help="Worker processes.")] = 1,
        port: Annotated[int, typer.Option(help="Port of the round-robin front door.")] = 8000,
        host: Annotated[str, typer.Option(help="Interface every process binds.")] = "127.0.0.1",
        database_url: Annotated[
            str | None,
            typer.Option(help="PostgreSQL URL (default: QUARRY_DATABASE_URL)."),
        ] = None,
        blob_url: Annotated[
            str | None,
            typer.Option(
                help="s3://bucket/prefix or file:///dir (default: QUARRY_BLOB_URL, else a "
                "folder under --data-dir, which works on one machine only)."
            ),
        ] = None,
        data_dir: Annotated[
            Path, typer.Option(help="Each process's state and logs go under this folder.")
        ] = Path(".quarry-fleet"),
        workspace: Annotated[
            Path | None,
            typer.Option(help="A workspace folder the Factory registers and compiles."),
        ] = None,
        name: Annotated[
            str | None, typer.Option(help="Workspace name (default: folder name).")
        ] = None,
        grace: Annotated[
            float, typer.Option(help="Seconds children get after SIGTERM before SIGKILL.")
        ] = 20.0,
    ) -> None:
        """Start 1 Factory + N serve replicas + M workers as separate processes against
        one PostgreSQL and one object store, behind a round-robin front door on --port;
        Ctrl-C stops them all."""
        from quarry.core.settings import load_settings
        from quarry.fleet.launcher import FleetPlan, run_fleet
        from quarry.store.db import is_sqlite

        settings = load_settings(database_url=database_url, blob_url=blob_url)
        configure_logging(settings.log_level, settings.log_format)
        url = settings.database_url
        if url is None or is_sqlite(url):
            raise fail(
                ConfigurationError(
                    "quarry fleet up needs a shared PostgreSQL database: pass --database-url "
                    "postgresql://... or set QUARRY_DATABASE_URL (SQLite serves one process)"
                )
            )
        root = data_dir.resolve()
        if workspace is not None and not workspace.is_dir():
            raise fail(
                ConfigurationError(
                    f"--workspace {workspace}: not a folder", parameter="--workspace"
                )
            )
        plan = FleetPlan(
            serve=serve,
            workers=workers,
            database_url=url,
            blob_url=settings.blob_url or (root / "blobs").as_uri(),
            data_dir=root,
            host=host,
            port=port,
            workspace=workspace.resolve() if workspace else None,
            name=name,
            grace=grace,
        )

        def echo(line: str) -> None:
            out.print(line, markup=False, highlight=False, soft_wrap=True)

        code = asyncio.run(run_fleet(plan, echo))
        raise typer.Exit(code)
