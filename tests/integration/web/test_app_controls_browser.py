"""The app page's controls in headless Chromium, with the real worker: widgets of
every control type (both ways of declaring them, templated options and defaults),
a change re-runs the app with the values, the values are in the URL, and the URL
opened again shows the same view from the stored result (no new run)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tests.conftest import Backend
from tests.integration.web.browser import DevToolsPage
from tests.integration.web.conftest import serve_demo
from tests.integration.web.test_app_controls import FILTERS_APP

READY = "document.body.dataset.state === 'ready'"
MARKDOWN = "document.querySelector('.block-markdown').textContent"


def _change(page: DevToolsPage, control: str, script: str) -> None:
    page.evaluate(
        f"(() => {{ const c = document.getElementById('control-{control}'); {script};"
        " c.dispatchEvent(new Event('change')); })()"
    )
    page.wait_for(READY, timeout=60)


def test_controls_rerun_the_app_and_live_in_the_url(
    backend_sqlite: Backend, tmp_path: Path
) -> None:
    today = dt.date.today()
    files = {"apps/filters.app.yml": FILTERS_APP}
    with (
        serve_demo(backend_sqlite, tmp_path, extra_files=files, workers=True) as served,
        DevToolsPage(tmp_path / "profile") as page,
    ):
        shell = served.client.get("/apps/filters")
        csp = shell.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp.split("style-src")[0]
        assert "<script>" not in shell.text and "onsubmit" not in shell.text

        page.open(f"{served.url}/apps/filters")
        page.wait_for(READY, timeout=60)
        options = "[...document.getElementById('control-year').options].map(o => o.value)"
        assert page.evaluate(options) == ["All", str(today.year), str(today.year - 1)]
        assert page.evaluate("document.getElementById('control-year').value") == str(today.year)
        assert page.evaluate("document.getElementById('control-until').type") == "date"
        assert page.evaluate("document.getElementById('control-until').value") == today.isoformat()
        assert page.evaluate("document.getElementById('control-big_only').type") == "checkbox"
        assert page.evaluate("document.getElementById('control-big_only').checked") is False
        regions = "[...document.getElementById('control-region').options].map(o => o.value)"
        assert page.evaluate(regions) == ["All", "East", "North", "South", "West"]
        assert "orders in All" in page.evaluate(MARKDOWN)
        assert page.evaluate("window.location.search") == ""

        _change(page, "big_only", "c.checked = true")
        assert "(3+ units)" in page.evaluate(MARKDOWN)
        _change(page, "region", "c.value = 'North'")
        text = page.evaluate(MARKDOWN)
        assert "orders in North (3+ units)" in text
        search = page.evaluate("window.location.search")
        assert search == "?big_only=true&region=North"
        runs = served.client.get("/api/v1/workspaces/shop/runs").json()["runs"]
        assert [r["variables"] for r in runs][:2] == [
            {
                "big_only": True,
                "region": "North",
                "until": today.isoformat(),
                "year": str(today.year),
            },
            {
                "big_only": True,
                "region": "All",
                "until": today.isoformat(),
                "year": str(today.year),
            },
        ]

        # the shared address shows the same view, from the stored result
        page.open(f"{served.url}/apps/filters{search}")
        page.wait_for(READY, timeout=60)
        assert page.evaluate(MARKDOWN) == text
        assert page.evaluate("document.getElementById('control-region').value") == "North"
        assert page.evaluate("document.getElementById('control-big_only').checked") is True
        again = served.client.get("/api/v1/workspaces/shop/runs").json()["runs"]
        assert len(again) == len(runs) == 3

        # back in history returns to the previous values
        page.evaluate("history.back()")
        page.wait_for(f"{READY} && window.location.search === '?big_only=true'", timeout=60)
        page.wait_for(f"{READY} && {MARKDOWN}.includes('orders in All (3+ units)')", timeout=60)
