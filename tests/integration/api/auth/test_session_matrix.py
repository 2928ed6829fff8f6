"""The browser's way in, across every registered route: the session cookie set by
``/sign-in`` authenticates like the bearer token it holds, and a write carried by the
cookie needs the session's CSRF token. Pages are routes like any other here: another
tenant's cookie gets a 404 for acme's runs and workspaces, and nothing changes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from quarry.api.auth import SAFE_METHODS, is_public
from quarry.web.session import SESSION_COOKIE, csrf_token
from tests.integration.api.auth.test_route_matrix import _requests, _send, _state
from tests.support.tenancy import ACME_WS, Deployment

CSRF_META = re.compile(r'<meta name="csrf-token" content="([0-9a-f]+)">')


@contextmanager
def _signed_in(dep: Deployment, who: str) -> Iterator[httpx.Client]:
    """Sign in through the form, as a browser does: the form's nonce cookie, then the
    token posted, then the session cookie set by the answer."""
    with httpx.Client(base_url=dep.url, timeout=30) as client:
        _sign_in(client, dep, who)
        yield client


def _sign_in(client: httpx.Client, dep: Deployment, who: str) -> None:
    form = client.get("/sign-in", params={"next": "/runs"})
    assert form.status_code == 200, form.text
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
    assert nonce is not None
    done = client.post(
        "/sign-in",
        data={"nonce": nonce.group(1), "next": "/runs", "token": dep.tokens[who]},
    )
    assert done.status_code == 303 and done.headers["location"] == "/runs", done.text
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax"), cookie
    assert client.cookies.get(SESSION_COOKIE) == dep.tokens[who]


def test_sign_in_refuses_a_bad_token_and_a_forged_form(deployment: Deployment) -> None:
    with httpx.Client(base_url=deployment.url, timeout=30) as client:
        form = client.get("/sign-in")
        nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
        assert nonce is not None
        bad = client.post("/sign-in", data={"nonce": nonce.group(1), "token": "qk_nope"})
        assert bad.status_code == 401 and "invalid token" in bad.text
        assert SESSION_COOKIE not in client.cookies
    with httpx.Client(base_url=deployment.url, timeout=30) as fresh:  # no nonce cookie
        forged = fresh.post(
            "/sign-in", data={"nonce": "x", "token": deployment.tokens["acme:admin"]}
        )
        assert forged.status_code == 403 and SESSION_COOKIE not in fresh.cookies


def test_a_cookie_write_without_the_csrf_token_is_refused_everywhere(
    deployment: Deployment,
) -> None:
    before = _state(deployment)
    spec = deployment.app.openapi()
    failures = []
    writes = 0
    with _signed_in(deployment, "acme:admin") as client:
        page = client.get("/runs")
        assert page.status_code == 200 and ACME_WS in page.text
        for route, method, path in _requests(deployment):
            if method in SAFE_METHODS or is_public(route.path):
                continue
            writes += 1
            got = _send(client, method, path, route.path, spec)
            if got.status_code != 403 or "csrf" not in got.text.lower():
                failures.append(f"{method} {path}: {got.status_code} {got.text[:120]}")
            wrong = client.request(method, path, headers={"X-CSRF-Token": "0" * 64})
            if wrong.status_code != 403:
                failures.append(f"{method} {path} (wrong token): {wrong.status_code}")
    assert writes >= 10 and failures == [], "\n".join(failures)
    assert _state(deployment) == before


def test_the_csrf_token_of_the_page_lets_the_write_through(deployment: Deployment) -> None:
    with _signed_in(deployment, "acme:editor") as client:
        page = client.get(f"/runs/{deployment.acme_run}")
        assert page.status_code == 200, page.text
        token = CSRF_META.search(page.text)
        assert token is not None
        assert token.group(1) == csrf_token(deployment.tokens["acme:editor"])
        retried = client.post(
            f"/runs/{deployment.acme_run}/retry", data={"csrf_token": token.group(1)}
        )
        assert retried.status_code == 303, retried.text
        assert retried.headers["location"].startswith("/runs/")
        assert retried.headers["location"] != f"/runs/{deployment.acme_run}"
        # the same token as a header, for page scripts calling the API
        cancelled = client.post(
            f"/api/v1/runs/{deployment.acme_run}/cancel", headers={"X-CSRF-Token": token.group(1)}
        )
        assert cancelled.status_code == 200, cancelled.text


def test_another_tenants_cookie_sees_no_page_of_acme(deployment: Deployment) -> None:
    before = _state(deployment)
    acme = deployment.svc.catalog.workspace("acme", ACME_WS)
    with _signed_in(deployment, "globex:admin") as client:
        run = client.get(f"/runs/{deployment.acme_run}")
        assert run.status_code == 404
        for path in (f"/ide/{ACME_WS}", f"/ide/{ACME_WS}/compile/events"):  # IdeOnly pages
            assert client.get(path).status_code == 404, path
        ide = client.get("/ide")  # globex's only workspace, or the list of its own
        assert ide.status_code in (200, 303) and ACME_WS not in ide.headers.get("location", "")
        for path in ("/", "/runs", "/dashboards", "/schedules", "/explore", "/chat"):
            got = client.get(path)
            assert got.status_code == 200, (path, got.text[:200])
            for secret in (ACME_WS, deployment.acme_run, acme.id):
                assert secret not in got.text, (path, secret)
        page = client.get("/runs")
        token = CSRF_META.search(page.text)
        assert token is not None
        cancel = client.post(
            f"/runs/{deployment.acme_run}/cancel", data={"csrf_token": token.group(1)}
        )
        assert cancel.status_code == 404
        pause = client.post(
            f"/schedules/{ACME_WS}/pause",
            data={"csrf_token": token.group(1), "name": "x", "kind": "schedule"},
        )
        assert pause.status_code == 404
    assert _state(deployment) == before


def test_a_viewer_sees_no_button_it_cannot_use(deployment: Deployment) -> None:
    with _signed_in(deployment, "acme:viewer") as viewer:
        runs = viewer.get("/runs").text
        run = viewer.get(f"/runs/{deployment.acme_run}").text
        assert "viewer" in runs and "Sign out" in runs
        assert "Start run" not in runs
        assert "Cancel run" not in run and "Retry" not in run
        ide = viewer.get(f"/ide/{ACME_WS}").text  # reads the files, saves and commits nothing
        assert 'id="ide-save"' not in ide and 'id="git-commit"' not in ide
        assert 'id="git-stage-all"' not in ide and 'id="git-unstage-all"' not in ide
        assert '"canEdit": false' in ide
    with _signed_in(deployment, "acme:editor") as editor:
        assert "Start run" in editor.get("/runs").text
        ide = editor.get(f"/ide/{ACME_WS}").text
        assert 'id="ide-save"' in ide and 'id="git-commit"' in ide
        assert 'id="git-stage-all"' in ide and 'id="git-unstage-all"' in ide
        page = editor.get(f"/runs/{deployment.acme_run}").text
        assert "Cancel run" in page or "Retry" in page


def test_a_signed_out_browser_is_sent_to_sign_in(deployment: Deployment) -> None:
    with httpx.Client(base_url=deployment.url, timeout=30) as client:
        page = client.get("/runs?state=failed", headers={"Accept": "text/html"})
        assert page.status_code == 303
        assert page.headers["location"] == "/sign-in?next=%2Fruns%3Fstate%3Dfailed"
        api = client.get("/api/v1/workspaces", headers={"Accept": "text/html"})
        assert api.status_code == 401  # the API keeps its answer (a page saying how)
    with httpx.Client(
        base_url=deployment.url, timeout=30, cookies={SESSION_COOKIE: "qk_forged"}
    ) as forged:
        assert forged.get("/runs").status_code == 401
    with _signed_in(deployment, "acme:viewer") as client:
        page = client.get("/runs")
        token = CSRF_META.search(page.text)
        assert token is not None
        out = client.post("/sign-out", data={"csrf_token": token.group(1)})
        assert out.status_code == 303 and out.headers["location"] == "/sign-in"
        assert SESSION_COOKIE not in client.cookies
        assert client.get("/runs").status_code == 401
