"""Browsers get pages, API clients keep JSON; /docs works offline (issue #19).

Over a real socket against the real application (SQLite + local folder)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from quarry.api.app import create_app
from quarry.api.browser import SWAGGER_UI_PATH, SWAGGER_UI_VERSION
from quarry.core.settings import Settings
from quarry.node.services import build_services
from tests.support.processes import serve_in_thread

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
VENDOR = Path(__file__).resolve().parents[3] / "src/quarry/web/static/vendor/swagger-ui"


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'state.db'}",
        blob_url=(tmp_path / "blobs").as_uri(),
        data_dir=tmp_path,
        inprocess_workers="off",
        **overrides,  # type: ignore[arg-type]
    )


def _crash() -> None:
    raise RuntimeError("boom: a bug on the request path")


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    app = create_app(build_services(_settings(tmp_path)))
    app.add_api_route("/test-only/crash", _crash)  # a route with a bug, for the 500
    with serve_in_thread(app) as base:
        yield base


def test_not_found_is_a_page_for_browsers_and_json_for_clients(url: str) -> None:
    page = httpx.get(f"{url}/api/v1/workspaces/nope", headers=BROWSER)
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "404 · Not found" in page.text and "nope" in page.text
    assert '<a href="/">start page</a>' in page.text
    for accept in ("application/json", "*/*", None):
        headers = {"Accept": accept} if accept else {}
        got = httpx.get(f"{url}/api/v1/workspaces/nope", headers=headers)
        assert got.status_code == 404 and got.json()["error"] == "not_found"


def test_a_crash_is_a_500_with_the_request_id(url: str) -> None:
    page = httpx.get(f"{url}/test-only/crash", headers={**BROWSER, "X-Request-Id": "req-42"})
    assert page.status_code == 500
    assert page.headers["x-request-id"] == "req-42"
    assert "<code>req-42</code>" in page.text and "boom" not in page.text  # nothing leaks
    got = httpx.get(f"{url}/test-only/crash", headers={"X-Request-Id": "req-43"})
    assert got.status_code == 500
    assert got.json() == {"error": "internal", "message": "internal error", "request_id": "req-43"}


def test_unauthorized_page_says_how_to_sign_in(tmp_path: Path) -> None:
    app = create_app(build_services(_settings(tmp_path, auth="tokens")))
    with serve_in_thread(app) as base:
        page = httpx.get(f"{base}/api/v1/workspaces", headers=BROWSER)
        assert page.status_code == 401
        assert page.headers["www-authenticate"].startswith("Bearer")
        assert "Sign in required" in page.text and "Authorization: Bearer" in page.text
        assert "quarry tokens create" in page.text
        api = httpx.get(f"{base}/api/v1/workspaces")
        assert api.status_code == 401 and api.json()["error"] == "unauthorized"


def test_docs_load_only_vendored_assets(url: str) -> None:
    docs = httpx.get(f"{url}/docs", headers=BROWSER)
    assert docs.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", docs.text)
    assert assets and all(a.startswith(SWAGGER_UI_PATH) for a in assets), assets
    for asset in assets:
        got = httpx.get(f"{url}{asset}")
        assert got.status_code == 200 and got.content == (VENDOR / Path(asset).name).read_bytes()
    assert "cdn" not in docs.text.lower()
    assert httpx.get(f"{url}/redoc").status_code == 404  # it could only load from a CDN
    assert httpx.get(f"{url}/openapi.json").status_code == 200
    readme = (VENDOR / "README.md").read_text()
    assert SWAGGER_UI_VERSION in readme and (VENDOR / "LICENSE").is_file()
