"""Who sees a thread: its owner and the tenant's admins; another user of the tenant,
another tenant (through either workspace) and nobody get nothing, and change nothing.
Tokens required, Postgres; no worker runs (the turn stays queued)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from quarry.store import threads as tq
from tests.support.tenancy import (
    ACME,
    ACME_WS,
    GLOBEX_WS,
    Deployment,
    postgres_settings,
    two_tenants,
)


@pytest.fixture
def deployment(pg_database: str, tmp_path: Path) -> Iterator[Deployment]:
    settings = postgres_settings(pg_database, (tmp_path / "blobs").as_uri(), tmp_path)
    with two_tenants(settings, tmp_path) as dep:
        yield dep


def _client(dep: Deployment, secret: str | None) -> httpx.Client:
    headers = {} if secret is None else {"Authorization": f"Bearer {secret}"}
    return httpx.Client(base_url=dep.url, headers=headers, timeout=30)


def test_a_thread_is_its_owners_and_the_admins(deployment: Deployment) -> None:
    dep = deployment
    acme = f"/api/v1/workspaces/{ACME_WS}"
    with dep.client("acme:editor") as owner:
        created = owner.post(
            f"{acme}/agents/agents/analyst/threads", json={"message": "Revenue by region?"}
        )
        assert created.status_code == 201, created.text
        thread_id = created.json()["thread"]["id"]
        reply_id = created.json()["reply"]["id"]
        assert owner.get(f"{acme}/threads/{thread_id}").status_code == 200
        listed = owner.get(f"{acme}/threads").json()["threads"]
        assert [t["id"] for t in listed] == [thread_id]
    with dep.client("acme:admin") as admin:
        assert admin.get(f"{acme}/threads/{thread_id}").status_code == 200
        assert [t["id"] for t in admin.get(f"{acme}/threads").json()["threads"]] == [thread_id]

    thread = f"{acme}/threads/{thread_id}"
    other_editor = dep.token(ACME, "editor", name="colleague")[1]
    with dep.svc.engine.connect() as conn:
        before = [(m.id, m.status) for m in tq.get_messages(conn, thread_id)]
    strangers = {
        "another user of acme": (_client(dep, other_editor), acme),
        "acme's viewer": (dep.client("acme:viewer"), acme),
        "globex's admin, acme's workspace": (dep.client("globex:admin"), acme),
        "globex's admin, its own workspace": (
            dep.client("globex:admin"),
            f"/api/v1/workspaces/{GLOBEX_WS}",
        ),
    }
    failures = []
    for who, (client, base) in strangers.items():
        with client:
            path = f"{base}/threads/{thread_id}"
            for method, url, body in (
                ("GET", path, None),
                ("GET", f"{path}/events?message={reply_id}", None),
                ("POST", f"{path}/messages", {"content": "hello"}),
                ("POST", f"{path}/cancel", None),
                ("POST", f"{path}/retry", None),
            ):
                got = client.request(method, url, json=body)
                allowed = (404, 403) if method == "POST" and "viewer" in who else (404,)
                # a 404 may echo the id it was asked for; nothing of the thread is a leak
                leaked = "Revenue by region" in got.text or (
                    reply_id in got.text and reply_id not in url
                )
                if got.status_code not in allowed or leaked:
                    failures.append(f"{who}: {method} {url}: {got.status_code} {got.text[:100]}")
            listed = client.get(f"{base}/threads")
            if thread_id in listed.text:
                failures.append(f"{who}: the thread is listed")
    assert failures == []
    with _client(dep, None) as nobody:
        assert nobody.get(thread).status_code == 401
        assert nobody.post(f"{thread}/messages", json={"content": "x"}).status_code == 401
    with dep.client("acme:viewer") as viewer:
        refused = viewer.post(f"{acme}/agents/agents/analyst/threads", json={"message": "x"})
        assert refused.status_code == 403
    with dep.svc.engine.connect() as conn:
        assert [(m.id, m.status) for m in tq.get_messages(conn, thread_id)] == before
