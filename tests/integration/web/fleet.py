"""A two-process web fleet for browser tests: a Factory (role ``ide``) compiling a
workspace folder and a ``serve`` replica proxying IdeOnly routes to it, on Postgres +
S3 with tokens required. Chromium talks only to the replica, as it would in
production; the page, IDE and chat fleet tests share this start-up."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from quarry.store import tokens as tokq
from quarry.store.db import create_state_engine
from quarry.store.workspaces import ensure_tenant
from tests.support.processes import ServerProcess, start_quarry, wait_healthy
from tests.support.services import S3Server, free_port


def editor_token(database_url: str) -> str:
    """A fresh editor token of tenant ``local`` (the one the pages sign in with)."""
    engine = create_state_engine(database_url)
    try:
        with engine.begin() as conn:
            ensure_tenant(conn, "local")
            _row, secret = tokq.create_token(conn, "local", "editor", "browser test")
    finally:
        engine.dispose()
    return secret


@contextmanager
def web_fleet(
    s3_server: S3Server,
    pg_database: str,
    tmp_path: Path,
    root: Path,
    factory_env: dict[str, str] | None = None,
) -> Iterator[ServerProcess]:
    """Start the Factory on ``root`` (workspace ``shop``) and a serve replica in front
    of it; yield the replica once both answer ``/healthz``; stop both after."""
    env = {
        **s3_server.env,
        "QUARRY_DATABASE_URL": pg_database,
        "QUARRY_BLOB_URL": f"s3://{s3_server.create_bucket()}/quarry",
        "QUARRY_REVISION_CACHE_TTL": "0.2",
        "QUARRY_AUTH": "tokens",
    }
    port = free_port()
    factory = start_quarry(
        ["serve", str(root), "--role", "ide", "--name", "shop"],
        {**env, "QUARRY_DATA_DIR": str(tmp_path / "factory"), **(factory_env or {})},
        tmp_path / "factory.log",
        port=port,
    )
    serve = start_quarry(
        ["serve", "--role", "serve"],
        {
            **env,
            "QUARRY_DATA_DIR": str(tmp_path / "serve"),
            "QUARRY_IDE_UPSTREAM": f"http://127.0.0.1:{port}",
        },
        tmp_path / "serve.log",
    )
    try:
        wait_healthy(factory, timeout=120)
        wait_healthy(serve, timeout=120)
        yield serve
    finally:
        serve.stop()
        factory.stop()
