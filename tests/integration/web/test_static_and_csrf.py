"""Pages over HTTP: hashed static assets (immutable caching, module imports rewritten
to hashed names), the security headers of every page, and CSRF in local open mode
(a browser's write needs the page's token; command-line clients are unaffected)."""

from __future__ import annotations

import hashlib
import re

from tests.integration.web.conftest import Served

PAGES = ("/", "/dashboards", "/runs", "/schedules", "/explore", "/apps/sales_overview")
ASSET = re.compile(r'(?:src|href)="(/static/[^"]+)"')


def test_pages_link_hashed_assets_cached_for_a_year(served_sqlite: Served) -> None:
    client = served_sqlite.client
    linked: set[str] = set()
    for path in PAGES:
        page = client.get(path)
        assert page.status_code == 200, (path, page.text[:300])
        csp = page.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "unsafe-eval" not in csp, (path, csp)
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-store"
        assert "<script>" not in page.text and " on" + "click=" not in page.text
        linked.update(ASSET.findall(page.text))
    stems = {u.split("/")[-1].split(".")[0] for u in linked}
    assert stems >= {
        "site",
        "app",
        "favicon",
        "vega",
        "vega-lite",
        "vega-embed",
        "vega-interpreter",
    }
    for url in linked:
        got = client.get(url)
        assert got.status_code == 200, url
        assert got.headers["cache-control"] == "public, max-age=31536000, immutable", url
        digest = url.rsplit(".", 2)[-2]
        assert hashlib.sha256(got.content).hexdigest().startswith(digest), url
        again = client.get(url, headers={"If-None-Match": got.headers["etag"]})
        assert again.status_code == 304
    app_js = next(u for u in linked if re.search(r"/app\.[0-9a-f]{12}\.js$", u))
    body = client.get(app_js).text
    imports = re.findall(r'from "\./([^"]+)"', body)
    assert imports and all(re.fullmatch(r"[a-z]+\.[0-9a-f]{12}\.js", i) for i in imports), imports
    for name in imports:  # the rewritten imports answer too
        assert client.get(f"/static/{name}").status_code == 200
    plain = client.get("/static/site.css")
    assert plain.status_code == 200 and "immutable" not in plain.headers.get("cache-control", "")


def test_open_mode_browser_writes_need_the_page_token(served_sqlite: Served) -> None:
    client = served_sqlite.client
    page = client.get("/runs").text
    token = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page)
    assert token is not None
    url = f"/api/v1/workspaces/{served_sqlite.workspace.name}/runs"
    body = {"name": "workflows/monthly_revenue"}
    browser = {"Origin": served_sqlite.url, "Sec-Fetch-Site": "same-origin"}
    refused = client.post(url, json=body, headers=browser)
    assert refused.status_code == 403 and refused.json()["error"] == "csrf_failed"
    cross = client.post(url, json=body, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    form = client.post(
        "/runs",
        data={"target": "shop:workflows/monthly_revenue", "csrf_token": "0" * 64},
        headers=browser,
    )
    assert form.status_code == 403
    with served_sqlite.svc.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM runs").scalar_one() == 0
    allowed = client.post(url, json=body, headers={**browser, "X-CSRF-Token": token.group(1)})
    assert allowed.status_code == 202, allowed.text
    started = client.post(
        "/runs",
        data={"target": "shop:workflows/monthly_revenue", "csrf_token": token.group(1)},
        headers=browser,
    )
    assert started.status_code == 303 and started.headers["location"].startswith("/runs/")
    cli = client.post(url, json=body)  # no browser headers: a command-line client
    assert cli.status_code == 202


def test_a_crafted_link_cannot_put_words_on_a_page(served_sqlite: Served) -> None:
    client = served_sqlite.client
    said = client.get("/schedules", params={"done": "paused", "name": "schedules/nightly"})
    assert 'role="status">Paused schedules/nightly.</p>' in said.text
    for params in (
        {"notice": "Your session expired: sign in at evil.example"},
        {"done": "paused", "name": "x. Your session expired: sign in at evil.example"},
        {"done": "anything", "name": "schedules/nightly"},
    ):
        page = client.get("/runs", params=params)
        assert page.status_code == 200
        assert 'class="notice' not in page.text and "evil.example" not in page.text, params
