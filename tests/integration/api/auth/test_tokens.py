"""Tokens over a real socket: expiry, revocation within the cache bound, the raw read
fast path authenticating too, hashes (never secrets) at rest, and the role rule
covering a route added without any authentication code of its own."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Request
from sqlalchemy import event, select, update

from quarry.api import auth as auth_module
from quarry.api.app import create_app
from quarry.api.auth import decide_open
from quarry.api.deps import AccessRole, principal
from quarry.api.ide.common import require
from quarry.core.clock import utcnow
from quarry.core.settings import Settings
from quarry.node.services import build_services
from quarry.store import tokens as tokq
from quarry.store.auth_tables import api_tokens
from quarry.store.db import create_state_engine
from quarry.store.migrate import migrate
from quarry.store.workspaces import ensure_tenant
from tests.support.processes import serve_in_thread, wait_until
from tests.support.tenancy import (
    ACME,
    ACME_WS,
    Deployment,
    postgres_settings,
    s3_url,
    two_tenants,
)

DEFINITION = f"/api/v1/workspaces/{ACME_WS}/definitions/workflow/workflows/monthly_revenue"
TTL = 1.0


@contextmanager
def _deployment(
    request: pytest.FixtureRequest,
    pg_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cache_ttl: float,
) -> Iterator[Deployment]:
    settings = postgres_settings(
        pg_database, s3_url(request, monkeypatch), tmp_path, auth_cache_ttl=cache_ttl
    )
    with two_tenants(settings, tmp_path) as dep:
        yield dep


@pytest.fixture
def short_ttl(
    request: pytest.FixtureRequest,
    pg_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Deployment]:
    with _deployment(request, pg_database, tmp_path, monkeypatch, TTL) as dep:
        yield dep


@pytest.fixture
def long_ttl(
    request: pytest.FixtureRequest,
    pg_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Deployment]:
    """Cache entries that outlive the test: every lookup it counts is an eviction's."""
    with _deployment(request, pg_database, tmp_path, monkeypatch, 3600) as dep:
        yield dep


def _get(dep: Deployment, path: str, secret: str | None) -> httpx.Response:
    headers = {} if secret is None else {"Authorization": f"Bearer {secret}"}
    return httpx.get(dep.url + path, headers=headers, timeout=10)


def test_revocation_takes_effect_within_the_cache_ttl(short_ttl: Deployment) -> None:
    dep = short_ttl
    token_id, secret = dep.token(ACME, "viewer")
    assert _get(dep, DEFINITION, secret).status_code == 200
    with dep.svc.engine.begin() as conn:
        tokq.revoke_token(conn, token_id)
    revoked_at = time.monotonic()
    wait_until(lambda: _get(dep, DEFINITION, secret).status_code == 401, 10, "revocation")
    assert time.monotonic() - revoked_at <= TTL + 1.0
    got = _get(dep, f"/api/v1/workspaces/{ACME_WS}", secret)
    assert got.status_code == 401 and got.json()["message"] == "token revoked"


def test_an_expired_token_is_refused(short_ttl: Deployment) -> None:
    dep = short_ttl
    token_id, secret = dep.token(ACME, "admin", expires_at=utcnow() + timedelta(days=1))
    with dep.svc.engine.begin() as conn:
        conn.execute(
            update(api_tokens)
            .where(api_tokens.c.id == token_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    got = _get(dep, f"/api/v1/workspaces/{ACME_WS}", secret)
    assert got.status_code == 401 and got.json()["message"] == "token expired"


def test_the_warm_fast_path_authenticates(short_ttl: Deployment) -> None:
    dep = short_ttl
    viewer = dep.tokens[f"{ACME}:viewer"]
    first = _get(dep, DEFINITION, viewer)
    assert first.status_code == 200
    assert _get(dep, DEFINITION, viewer).content == first.content  # now served warm
    for secret, status in (
        (None, 401),
        ("qk_forged", 401),
        ("not-even-a-token", 401),
        (dep.tokens["globex:admin"], 404),
    ):
        got = _get(dep, DEFINITION, secret)
        assert got.status_code == status, (secret, got.text)
        assert first.content not in got.content


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer qk_", "qk_abc", "Token qk_abc"],
)
def test_malformed_authorization_is_401(short_ttl: Deployment, header: str) -> None:
    got = httpx.get(
        short_ttl.url + "/api/v1/workspaces", headers={"Authorization": header}, timeout=10
    )
    assert got.status_code == 401 and got.headers["www-authenticate"].startswith("Bearer")


def test_only_the_hash_is_stored(short_ttl: Deployment) -> None:
    dep = short_ttl
    token_id, secret = dep.token(ACME, "editor")
    with dep.svc.engine.connect() as conn:
        row = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).one()
    assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert all(secret not in str(value) for value in row)
    assert secret.startswith("qk_") and len(secret) >= 40


def _sqlite_tokens(tmp_path: Path, **extra: Any) -> Settings:
    """A local SQLite process that requires tokens, with nothing running beside it."""
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'state.db'}",
        blob_url=(tmp_path / "blobs").as_uri(),
        data_dir=tmp_path,
        auth="tokens",
        inprocess_workers="off",
        global_driver="off",
        **extra,
    )


@pytest.fixture
def extended(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A route added the way another module would, with no authentication code, and
    one that declares the admin role."""
    settings = _sqlite_tokens(tmp_path)
    svc = build_services(settings)
    app = create_app(svc)
    router = APIRouter()

    @router.post("/api/v1/things")
    async def add_thing(request: Request) -> dict[str, str]:
        return {"tenant": principal(request).tenant_id}

    @router.post("/api/v1/settings")
    async def change_settings(request: Request) -> dict[str, str]:
        require(request, AccessRole.ADMIN)
        return {"changed": "yes"}

    app.include_router(router)
    secrets = {}
    with svc.engine.begin() as conn:
        ensure_tenant(conn, ACME)
        for role in tokq.ROLES:
            secrets[role] = tokq.create_token(conn, ACME, role, role)[1]
    with serve_in_thread(app) as url:
        yield url, secrets
    svc.close()


def test_routes_added_later_are_covered(extended: tuple[str, dict[str, str]]) -> None:
    url, secrets = extended

    def post(path: str, role: str | None) -> int:
        headers = {} if role is None else {"Authorization": f"Bearer {secrets[role]}"}
        return httpx.post(url + path, headers=headers, timeout=10).status_code

    assert [post("/api/v1/things", r) for r in (None, "viewer", "editor", "admin")] == [
        401,
        403,
        200,
        200,
    ]
    assert [post("/api/v1/settings", r) for r in (None, "viewer", "editor", "admin")] == [
        401,
        403,
        403,
        200,
    ]


def test_auto_mode_is_open_only_for_a_local_sqlite_process_without_tokens(
    tmp_path: Path,
) -> None:
    engine = create_state_engine(f"sqlite:///{tmp_path / 'state.db'}")
    migrate(engine)
    auto = Settings(auth="auto")
    assert decide_open(auto, engine)
    assert not decide_open(Settings(auth="auto", role="serve"), engine)
    assert not decide_open(Settings(auth="tokens"), engine)
    with engine.begin() as conn:
        ensure_tenant(conn, ACME)
        token_id = tokq.create_token(conn, ACME, "viewer", "v")[0].id
    assert not decide_open(auto, engine)
    with engine.begin() as conn:
        tokq.revoke_token(conn, token_id)
    assert decide_open(auto, engine)
    assert decide_open(Settings(auth="open", role="serve"), engine)
    engine.dispose()


def test_metrics_may_require_a_scrape_token(tmp_path: Path) -> None:
    settings = _sqlite_tokens(tmp_path, metrics_token="scrape-secret")
    svc = build_services(settings)
    with serve_in_thread(create_app(svc)) as url:
        assert httpx.get(f"{url}/metrics", timeout=10).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert httpx.get(f"{url}/metrics", headers=wrong, timeout=10).status_code == 401
        right = {"Authorization": "Bearer scrape-secret"}
        got = httpx.get(f"{url}/metrics", headers=right, timeout=10)
        assert got.status_code == 200 and "quarry_queue_active_tasks" in got.text
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    svc.close()


def _token_queries(dep: Deployment) -> list[str]:
    """Statements against the token table, recorded from the server's own engine."""
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "api_tokens" in statement:
            seen.append(statement)

    event.listen(dep.svc.engine, "before_cursor_execute", record)
    return seen


@pytest.mark.parametrize(
    "secret",
    [
        "qk_forged",
        "qk_" + "a" * 42,  # one character short
        "qk_" + "a" * 44,  # one character long
        "qk_" + "a" * 42 + "!",  # the right length, a character base64url never has
        "qk_" + "a" * 300,
    ],
)
def test_a_string_without_a_tokens_shape_never_reaches_the_database(
    short_ttl: Deployment, secret: str
) -> None:
    queries = _token_queries(short_ttl)
    assert _get(short_ttl, DEFINITION, secret).status_code == 401
    assert queries == []
    # A string of the right shape is looked up (and is not a token either).
    assert _get(short_ttl, DEFINITION, "qk_" + "a" * 43).status_code == 401
    assert len(queries) == 1


def test_a_full_cache_evicts_the_least_recently_used_entry(
    long_ttl: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood of made-up tokens pushes out older made-up ones, never a token in use."""
    dep = long_ttl
    monkeypatch.setattr(auth_module, "CACHE_LIMIT", 4)
    _token_id, secret = dep.token(ACME, "viewer")
    made_up = [f"qk_{n:043d}" for n in range(4)]
    queries = _token_queries(dep)

    def lookups(presented: str, status: int) -> int:
        before = len(queries)
        assert _get(dep, DEFINITION, presented).status_code == status
        return len(queries) - before

    assert lookups(secret, 200) == 1
    assert [lookups(s, 401) for s in made_up[:3]] == [1, 1, 1]  # the cache is full
    assert lookups(secret, 200) == 0  # a hit: now the most recently used
    assert lookups(made_up[3], 401) == 1  # evicts made_up[0], the least recently used
    assert lookups(secret, 200) == 0
    assert lookups(made_up[2], 401) == 0
    assert lookups(made_up[0], 401) == 1  # it was the one evicted
