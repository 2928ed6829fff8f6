"""A real bearer token for fleet tests: on Postgres every replica and the Factory
authenticate each request themselves, so requests carry ``Authorization`` end to end
(the proxy passes it through untouched)."""

from __future__ import annotations

import pytest

from quarry.store import tokens as tokq
from quarry.store.db import create_state_engine
from quarry.store.workspaces import ensure_tenant


def issue_token(database_url: str, tenant: str = "local", role: str = "admin") -> str:
    engine = create_state_engine(database_url)
    try:
        with engine.begin() as conn:
            ensure_tenant(conn, tenant)
            _row, secret = tokq.create_token(conn, tenant, role, "fleet test")
    finally:
        engine.dispose()
    return secret


@pytest.fixture
def auth_headers(pg_database: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(pg_database)}"}
