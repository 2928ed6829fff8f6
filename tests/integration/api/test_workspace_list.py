"""The workspace list is keyset-paginated (issue #22): pages follow ``next_cursor``
and cover every workspace of the tenant exactly once, whatever the page size and
whatever the names' punctuation and case (the collation of ``>`` and ``ORDER BY`` is
the database's own: SQLite's and Postgres's), even with a workspace registered
between two pages; a bad ``limit`` or ``cursor`` is a 400 naming the parameter; the
remote ``quarry workspace list`` follows the cursor. Real socket, both backends."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from quarry.api.app import create_app
from quarry.api.fleet.cursors import encode_cursor
from quarry.api.fleet.workspaces import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX
from quarry.node.services import Services, build_services
from quarry.store.workspaces import ensure_tenant, register_workspace
from tests.conftest import Backend
from tests.support.processes import serve_in_thread

NAMES = [
    "0first",
    "A1",
    "Zeta",
    "a-b",
    "a.b",
    "a_b",
    "ab",
    "b10",
    "b9",
    "zeta",
    "zeta-2",
    "zz.last",
]


@dataclass
class Served:
    client: httpx.Client
    svc: Services
    folder: Path
    url: str


@pytest.fixture
def served(backend: Backend, tmp_path: Path) -> Iterator[Served]:
    svc = build_services(backend.settings(data_dir=tmp_path / "data"))
    folder = tmp_path / "ws"
    folder.mkdir()
    ensure_tenant_rows(svc)
    for name in NAMES:
        register(svc, "local", name, folder)
    # another tenant's workspaces, named to interleave with local's: never listed
    for name in ("a-c", "b", "zz"):
        register(svc, "other", name, folder)
    with serve_in_thread(create_app(svc)) as url, httpx.Client(base_url=url) as client:
        yield Served(client, svc, folder, url)
    svc.close()


def ensure_tenant_rows(svc: Services) -> None:
    with svc.engine.begin() as conn:
        ensure_tenant(conn, "local")
        ensure_tenant(conn, "other")


def register(svc: Services, tenant: str, name: str, folder: Path) -> None:
    register_workspace(
        svc.engine, tenant_id=tenant, name=name, source_kind="path", source=str(folder)
    )


def pages(client: httpx.Client, limit: int) -> list[list[str]]:
    out: list[list[str]] = []
    query = f"?limit={limit}"
    while True:
        got = client.get(f"/api/v1/workspaces{query}")
        assert got.status_code == 200, got.text
        body = got.json()
        out.append([w["name"] for w in body["workspaces"]])
        assert len(out[-1]) <= limit
        if body["next_cursor"] is None:
            return out
        assert len(out[-1]) == limit, "a page short of the limit is the last one"
        query = f"?limit={limit}&cursor={quote(body['next_cursor'])}"
        assert len(out) <= len(NAMES) + 1, "the cursor does not advance"


def test_pages_cover_every_workspace_exactly_once(served: Served) -> None:
    whole = served.client.get("/api/v1/workspaces").json()
    assert whole["next_cursor"] is None, f"{len(NAMES)} < the default page"
    order = [w["name"] for w in whole["workspaces"]]
    assert sorted(order) == sorted(NAMES), "another tenant's workspace, or one missing"
    for limit in (1, 2, 5, len(NAMES) - 1, len(NAMES), len(NAMES) + 1):
        got = pages(served.client, limit)
        flat = [name for page in got for name in page]
        assert flat == order, f"limit {limit}: {got}"
        assert len(got) == -(-len(NAMES) // limit), f"limit {limit}: an empty last page"


def test_a_workspace_registered_between_pages_is_listed_once(served: Served) -> None:
    first = served.client.get("/api/v1/workspaces?limit=4").json()
    seen = [w["name"] for w in first["workspaces"]]
    # one that sorts before the cursor (already passed) and one after it
    register(served.svc, "local", "00early", served.folder)
    register(served.svc, "local", "yy-late", served.folder)
    cursor = first["next_cursor"]
    while cursor is not None:
        page = served.client.get(f"/api/v1/workspaces?limit=4&cursor={quote(cursor)}").json()
        seen += [w["name"] for w in page["workspaces"]]
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen)), seen
    assert set(seen) == {*NAMES, "yy-late"}


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("limit=0", "limit"),
        (f"limit={LIST_LIMIT_MAX + 1}", "limit"),
        ("limit=ten", "limit"),
        ("cursor=not-base64!", "cursor"),
        # a runs cursor; a fixed instant so every xdist worker collects the same id
        ("cursor=" + quote(encode_cursor(datetime(2026, 1, 2, tzinfo=UTC), "run1")), "cursor"),
        ("cursor=" + quote("eyJhZnRlciI6IDF9"), "cursor"),  # {"after": 1}
        ("cursor=", "cursor"),
    ],
)
def test_a_bad_limit_or_cursor_is_a_400_naming_it(
    served: Served, query: str, parameter: str
) -> None:
    got = served.client.get(f"/api/v1/workspaces?{query}")
    assert got.status_code == 400, got.text
    details = got.json()["details"]
    # schema checks (FastAPI) list their problems; the handler's own check names one
    named = (
        [d["parameter"] for d in details] if isinstance(details, list) else [details["parameter"]]
    )
    assert any(n in (parameter, f"query.{parameter}") for n in named), got.json()


def test_the_default_page_and_the_cli_follow_the_cursor(served: Served) -> None:
    """Past the default page a client that ignores ``next_cursor`` sees the first
    LIST_LIMIT_DEFAULT names (and a non-null cursor telling it more follow); the
    remote CLI lists every one."""
    extra = [f"bulk{i:04d}" for i in range(LIST_LIMIT_DEFAULT + 1200 - len(NAMES))]
    for name in extra:
        register(served.svc, "local", name, served.folder)
    total = len(NAMES) + len(extra)
    first = served.client.get("/api/v1/workspaces").json()
    assert len(first["workspaces"]) == LIST_LIMIT_DEFAULT and first["next_cursor"]

    done = subprocess.run(
        [sys.executable, "-m", "quarry", "workspace", "list", "--url", served.url],
        env={**os.environ, "COLUMNS": "250", "QUARRY_TOKEN": "unused-in-open-mode"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    listed = re.findall(r"\bbulk\d{4}\b", done.stdout)
    assert len(listed) == len(extra) and "zz.last" in done.stdout, (
        f"{len(listed)} of {len(extra)} bulk names; {total} in all"
    )
