"""Two tenants on one Postgres deployment, each with a compiled workspace and tokens."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from quarry.api.app import create_app
from quarry.core.settings import Settings
from quarry.demo import create_demo_workspace
from quarry.factory.local import compile_local
from quarry.node.services import Services, build_services
from quarry.runtime.runs.service import RunRequest, create_run
from quarry.store import tokens as tokq
from tests.support.processes import serve_in_thread

ACME, GLOBEX = "acme", "globex"
ACME_WS, GLOBEX_WS = "acme-ws", "globex-ws"
WORKFLOW = "workflows/monthly_revenue"


@dataclass
class Deployment:
    svc: Services
    url: str
    roots: dict[str, Path]
    app: Any = None
    tokens: dict[str, str] = field(default_factory=dict)  # "<tenant>:<role>" -> secret
    acme_run: str = ""

    def client(self, who: str | None, **kwargs: Any) -> httpx.Client:
        headers = {} if who is None else {"Authorization": f"Bearer {self.tokens[who]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def token(
        self, tenant: str, role: str, *, expires_at: datetime | None = None, name: str = "t"
    ) -> tuple[str, str]:
        """(token id, secret) of a new token."""
        with self.svc.engine.begin() as conn:
            row, secret = tokq.create_token(conn, tenant, role, name, expires_at=expires_at)
        return row.id, secret


def postgres_settings(
    pg_database: str, s3_bucket_url: str, tmp_path: Path, **overrides: object
) -> Settings:
    values: dict[str, object] = {
        "database_url": pg_database,
        "blob_url": s3_bucket_url,
        "data_dir": tmp_path / "data",
        "revision_cache_ttl": 0,
        "inprocess_workers": "off",
        "auth": "tokens",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@contextmanager
def two_tenants(settings: Settings, tmp_path: Path) -> Iterator[Deployment]:
    """Serve ``settings`` on a real socket with tenants acme and globex, a viewer, an
    editor and an admin token for each, and one queued acme run."""
    svc = build_services(settings)
    roots = {}
    for tenant, ws in ((ACME, ACME_WS), (GLOBEX, GLOBEX_WS)):
        root = create_demo_workspace(tmp_path / ws)
        compile_local(svc.engine, svc.store, tenant, root, ws, data_dir=settings.data_dir)
        roots[tenant] = root
    try:
        app = create_app(svc)
        with serve_in_thread(app) as url:
            dep = Deployment(svc, url, roots, app)
            for tenant in (ACME, GLOBEX):
                for role in tokq.ROLES:
                    dep.tokens[f"{tenant}:{role}"] = dep.token(tenant, role)[1]
            acme = svc.catalog.workspace(ACME, ACME_WS)
            run = create_run(svc, acme, RunRequest("workflow", WORKFLOW, {}))
            dep.acme_run = run.id
            yield dep
    finally:
        svc.close()


def s3_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    s3 = request.getfixturevalue("s3_server")
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    return f"s3://{s3.create_bucket()}/quarry"
