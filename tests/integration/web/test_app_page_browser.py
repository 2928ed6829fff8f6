"""The app page in headless Chromium: charts render (SVG), a screenshot is taken."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.web.conftest import Served
from tests.integration.web.demo_app import APP, store_demo_result

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "Chromium is not installed: the app page must be checked in a real browser. "
        "Install it with `apt-get install -y chromium` (scripts/system-deps does)."
    )


def _browse(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,2000",
        "--virtual-time-budget=10000",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_app_page_renders_charts_in_chromium(served_sqlite: Served, tmp_path: Path) -> None:
    served = served_sqlite
    browser = _chromium()
    store_demo_result(
        served.svc.store,
        served.root,
        tenant_id="local",
        workspace_id=served.workspace.id,
        revision_id=served.revision_id,
    )
    url = f"{served.url}/apps/{APP}"

    dom = _browse(browser, tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'data-state="ready"' in html, html[-3000:]
    assert html.count('class="marks"') >= 3, "line, bar and pie charts render as SVG"
    assert "<svg" in html
    assert "Top ten products" in html and "Key figures" in html
    assert "$445,833.33" in html, "currency formats apply to table cells"
    assert '<option value="North">North</option>' in html

    shot = tmp_path / "app.png"
    got = _browse(browser, tmp_path / "profile-shot", f"--screenshot={shot}", url)
    assert got.returncode == 0, got.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC)
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 2000)
    assert len(data) > 40_000, "a blank page compresses to a few kilobytes"
    keep = os.environ.get("QUARRY_KEEP_SCREENSHOT")
    if keep:  # to look at the page yourself
        shutil.copyfile(shot, keep)
