"""Every registered route, enumerated from the application itself (so routes added
later are covered without editing this file), against three callers: nobody (401),
another tenant (403 or 404, and nothing of acme's in any answer), and acme's viewer
(no write succeeds). Acme's state — rows and working copy — is compared before and
after: a request that answered an error but wrote anyway fails the test."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from quarry.api.auth import SAFE_METHODS, is_public, required_role
from quarry.api.deps import AccessRole
from quarry.api.fleet.cursors import encode_name_cursor
from quarry.api.route_audit import RegisteredRoute, registered_routes
from quarry.store.queue_tables import tasks
from quarry.store.run_tables import runs
from quarry.store.tables import revisions, workspaces
from tests.support.tenancy import ACME, ACME_WS, GLOBEX_WS, WORKFLOW, Deployment

PARAM = re.compile(r"\{([^}:]+)(?::path)?\}")
EXPECTED_PUBLIC = {"/healthz", "/readyz", "/metrics", "/keepalive", "/sign-in"}


def _values(dep: Deployment) -> dict[str, str]:
    return {
        "workspace": ACME_WS,
        "run_id": dep.acme_run,
        "kind": "workflow",
        "name": WORKFLOW,
        "path": "workflows/monthly_revenue.workflow.yml",
    }


def _fill(template: str, values: dict[str, str]) -> str:
    return PARAM.sub(lambda m: values.get(m.group(1), "x"), template)


def _requests(dep: Deployment) -> list[tuple[RegisteredRoute, str, str]]:
    values = _values(dep)
    found = [
        (route, method, _fill(route.path, values))
        for route in registered_routes(dep.app)
        for method in sorted(route.methods - {"HEAD"})
    ]
    assert len(found) > 20, "route enumeration found too little to be meaningful"
    return found


PLAUSIBLE: dict[str, object] = {
    "name": WORKFLOW,
    "content": "x",
    "from": "queries/monthly_revenue.sql",
    "to": "queries/moved.sql",
    "message": "edit",
    "branch": "main",
    "origin": "https://example.invalid/repo.git",
    "expected_hash": None,
}


def _plausible(schema: dict[str, Any], spec: dict[str, Any], key: str = "") -> object:
    """A value the schema accepts, so a request passes validation and reaches the
    handler (where the tenant check is) instead of stopping at a 400."""
    if "$ref" in schema:
        ref = schema["$ref"].rsplit("/", 1)[-1]
        return _plausible(spec["components"]["schemas"][ref], spec, key)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        if any(o.get("type") == "null" for o in options):
            return None
        return _plausible(options[0], spec, key)
    if key in PLAUSIBLE:
        return PLAUSIBLE[key]
    kind = schema.get("type")
    if kind == "object":
        required = schema.get("required", [])
        props = schema.get("properties", {})
        return {k: _plausible(props.get(k, {}), spec, k) for k in required}
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "array" and schema.get("minItems", 0) > 0:
        item = _plausible(schema.get("items", {}), spec)
        return [item for _ in range(schema["minItems"])]
    defaults: dict[str, object] = {"integer": 1, "number": 1, "boolean": False, "array": []}
    return defaults.get(str(kind), "x")


def _body(spec: dict[str, Any], template: str, method: str) -> object:
    operation = spec["paths"].get(template, {}).get(method.lower(), {})
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    return {} if schema is None else _plausible(schema, spec)


def _send(
    client: httpx.Client, method: str, path: str, template: str, spec: dict[str, Any]
) -> httpx.Response:
    if method in SAFE_METHODS:
        return client.request(method, path)
    body = _body(spec, template, method)
    for _ in range(5):
        got = client.request(method, path, json=body)
        missing = _missing_fields(got) if isinstance(body, dict) else []
        if got.status_code != 400 or not missing or all(k in body for k in missing):
            return got
        # a handler parsing its own body: fill what the 400 names, and try again
        body.update({k: PLAUSIBLE.get(k, "x") for k in missing})
    return got


def _missing_fields(got: httpx.Response) -> list[str]:
    try:
        details = got.json().get("details")
    except ValueError:
        return []
    problems = details.get("problems", []) if isinstance(details, dict) else details or []
    return [str(p.get("parameter", "")).rsplit(".", 1)[-1] for p in problems]


def _state(dep: Deployment) -> tuple[object, ...]:
    """Everything of acme's a write could change: rows, and the working copy's bytes."""
    with dep.svc.engine.connect() as conn:
        counts = tuple(
            conn.execute(select(func.count()).select_from(table).where(cond)).scalar_one()
            for table, cond in (
                (runs, runs.c.tenant_id == ACME),
                (tasks, tasks.c.tenant_id == ACME),
                (workspaces, workspaces.c.tenant_id == ACME),
            )
        )
        ws = conn.execute(
            select(workspaces.c.id, workspaces.c.current_revision_id).where(
                workspaces.c.tenant_id == ACME
            )
        ).all()
        revs = conn.execute(select(func.count()).select_from(revisions)).scalar_one()
    tree = hashlib.sha256()
    root: Path = dep.roots[ACME]
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith((".quarry/", ".git/")):
            tree.update(rel.encode() + b"\0" + path.read_bytes())
    return counts, tuple(ws), revs, tree.hexdigest()


def test_public_routes_are_only_the_probes(deployment: Deployment) -> None:
    public = {r.path for r in registered_routes(deployment.app) if is_public(r.path)}
    assert public <= EXPECTED_PUBLIC, public


def test_without_a_token_every_route_is_401(deployment: Deployment) -> None:
    before = _state(deployment)
    spec = deployment.app.openapi()
    failures = []
    with deployment.client(None) as client:
        for route, method, path in _requests(deployment):
            if is_public(route.path):
                continue
            got = _send(client, method, path, route.path, spec)
            if got.status_code != 401 or got.headers.get("www-authenticate") is None:
                failures.append(f"{method} {path}: {got.status_code} {got.text[:120]}")
            bad = client.request(method, path, headers={"Authorization": "Bearer qk_forged"})
            if bad.status_code != 401:
                failures.append(f"{method} {path} (forged token): {bad.status_code}")
    assert failures == [], "\n".join(failures)
    assert _state(deployment) == before


def test_another_tenants_token_sees_and_changes_nothing_of_acme(deployment: Deployment) -> None:
    before = _state(deployment)
    spec = deployment.app.openapi()
    secrets = [deployment.tokens[f"{ACME}:{r}"] for r in ("viewer", "editor", "admin")]
    acme = deployment.svc.catalog.workspace(ACME, ACME_WS)
    private = [acme.id]  # (revision ids are content hashes: equal content, equal id)
    failures = []
    with deployment.client("globex:admin") as client:
        for route, method, path in _requests(deployment):
            if is_public(route.path):
                continue
            got = _send(client, method, path, route.path, spec)
            targets_acme = "{workspace}" in route.path or "{run_id}" in route.path
            if targets_acme and got.status_code not in (403, 404):
                failures.append(f"{method} {path}: {got.status_code} {got.text[:120]}")
            # A 404 may echo the name it was asked for; anything else of acme's is a leak.
            markers = [m for m in (ACME_WS, deployment.acme_run) if m not in path]
            leaked = [s for s in (*markers, *private, *secrets) if s in got.text]
            if leaked:
                failures.append(f"{method} {path}: answer mentions {leaked}")
    assert failures == [], "\n".join(failures)
    assert _state(deployment) == before


def test_a_viewer_token_makes_no_write(deployment: Deployment) -> None:
    before = _state(deployment)
    spec = deployment.app.openapi()
    failures = []
    writes = 0
    with deployment.client("acme:viewer") as client:
        for route, method, path in _requests(deployment):
            if method in SAFE_METHODS or is_public(route.path):
                continue
            if required_role(method, path) is AccessRole.VIEWER:
                # a POST that only reads (the semantic query): allowed, and the state
                # comparison below proves it changed nothing
                _send(client, method, path, route.path, spec)
                continue
            writes += 1
            got = _send(client, method, path, route.path, spec)
            if got.status_code != 403:
                failures.append(f"{method} {path}: {got.status_code} {got.text[:120]}")
    assert writes >= 5 and failures == []
    assert _state(deployment) == before


def test_the_tokens_are_good_for_their_own_tenant(deployment: Deployment) -> None:
    """The matrix cannot pass by accident: the same tokens do work where they should."""
    with deployment.client("acme:viewer") as viewer:
        assert viewer.get(f"/api/v1/workspaces/{ACME_WS}").status_code == 200
        assert viewer.get(f"/api/v1/runs/{deployment.acme_run}").status_code == 200
        listed = viewer.get("/api/v1/workspaces").json()["workspaces"]
        assert [w["name"] for w in listed] == [ACME_WS]
        semantic = f"/api/v1/workspaces/{ACME_WS}/semantic"
        assert viewer.get(f"{semantic}/catalog").status_code == 200
        asked = viewer.post(
            f"{semantic}/query?sql_only=1", json={"topic": "sales", "measures": ["orders.revenue"]}
        )
        assert asked.status_code == 200, asked.text
    with deployment.client("acme:editor") as editor:
        created = editor.post(f"/api/v1/workspaces/{ACME_WS}/runs", json={"name": WORKFLOW})
        assert created.status_code == 202, created.text
    with deployment.client("globex:viewer") as other:
        names = [w["name"] for w in other.get("/api/v1/workspaces").json()["workspaces"]]
        assert ACME_WS not in names and names
        # page by page, from a cursor placed before acme's name: still only globex's
        paged: list[str] = []
        cursor: str | None = encode_name_cursor("a")
        while cursor is not None:
            page = other.get("/api/v1/workspaces", params={"limit": 1, "cursor": cursor}).json()
            paged += [w["name"] for w in page["workspaces"]]
            cursor = page["next_cursor"]
        assert paged == [n for n in names if n > "a"] and ACME_WS not in paged
        # the same query on globex's own workspace works, on acme's it is not found
        body = {"topic": "sales", "measures": ["orders.revenue"]}
        mine = other.post(f"/api/v1/workspaces/{GLOBEX_WS}/semantic/query?sql_only=1", json=body)
        assert mine.status_code == 200, mine.text
        theirs = other.post(f"/api/v1/workspaces/{ACME_WS}/semantic/query?sql_only=1", json=body)
        assert theirs.status_code == 404
