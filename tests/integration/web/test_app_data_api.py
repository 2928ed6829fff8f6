"""The app data endpoint and the page shell, on both backends."""

from __future__ import annotations

import pytest

from tests.integration.web.conftest import Served
from tests.integration.web.demo_app import APP, DATA, store_demo_result


def _store(served: Served, **given: str) -> dict[str, object]:
    return store_demo_result(
        served.svc.store,
        served.root,
        tenant_id="local",
        workspace_id=served.workspace.id,
        revision_id=served.revision_id,
        given=given,
    )


def test_no_stored_result_asks_for_a_run(served: Served) -> None:
    got = served.client.get(DATA)
    assert got.status_code == 404, got.text
    body = got.json()
    assert body["error"] == "not_found"
    assert body["details"]["run_needed"] is True
    assert body["details"]["revision_id"] == served.revision_id
    assert body["details"]["controls"] == {"region": "All"}
    assert body["details"]["app"] == APP


def test_stored_result_with_strong_etag(served: Served) -> None:
    stored = _store(served)
    got = served.client.get(DATA)
    assert got.status_code == 200, got.text
    assert got.json() == stored
    assert got.headers["x-quarry-revision"] == served.revision_id
    etag = got.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = served.client.get(DATA, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    # defaults given explicitly and a pinned revision reach the same stored result
    pinned = served.client.get(DATA, params={"region": "All", "revision": served.revision_id})
    assert pinned.status_code == 200 and pinned.headers["etag"] == etag


def test_results_are_cached_per_control_value(served: Served) -> None:
    _store(served)
    north = served.client.get(DATA, params={"region": "North"})
    assert north.status_code == 404 and north.json()["details"]["controls"] == {"region": "North"}
    stored = _store(served, region="North")
    got = served.client.get(DATA, params={"region": "North"})
    assert got.status_code == 200 and got.json() == stored
    all_regions = served.client.get(DATA).json()
    kpis = {d.get("data"): d for d in all_regions["display"]}["kpis"]
    assert kpis["rows"][0][0] > stored["display"][1]["rows"][0][0]  # type: ignore[index]


@pytest.mark.parametrize(
    ("path", "params", "status", "control"),
    [
        (DATA, {"region": "Mars"}, 400, "region"),
        (DATA, {"colour": "red"}, 400, "colour"),
        (DATA, {"revision": "../x"}, 400, None),
        (DATA, {"revision": "0" * 32}, 404, None),
        ("/api/v1/workspaces/shop/apps/apps/nope/data", {}, 404, None),
        ("/api/v1/workspaces/nope/apps/apps/sales_overview/data", {}, 404, None),
    ],
)
def test_bad_requests(
    served: Served, path: str, params: dict[str, str], status: int, control: str | None
) -> None:
    got = served.client.get(path, params=params)
    assert got.status_code == status, got.text
    body = got.json()
    assert body["message"]
    details = body.get("details")
    if isinstance(details, dict):
        assert "run_needed" not in details
    if control is not None:
        assert body["details"]["control"] == control


def test_page_shell_and_static_files(served: Served) -> None:
    for path in (f"/apps/{APP}", "/apps/sales_overview", f"/workspaces/shop/apps/{APP}"):
        page = served.client.get(path)
        assert page.status_code == 200, (path, page.text)
        assert page.headers["content-type"].startswith("text/html")
        assert "<title>Sales overview · Quarry</title>" in page.text
        assert f"/api/v1/workspaces/shop/apps/{APP}/data" in page.text
    for asset in (
        "app.js",
        "markdown.js",
        "app.css",
        "vendor/vega.min.js",
        "vendor/vega-lite.min.js",
        "vendor/vega-embed.min.js",
    ):
        got = served.client.get(f"/static/{asset}")
        assert got.status_code == 200, asset
        assert len(got.content) > 1000
    assert served.client.get("/apps/apps/nope").status_code == 404
    assert served.client.get("/workspaces/nope/apps/x").status_code == 404
    assert served.client.get("/static/../pyproject.toml").status_code == 404
