"""Web app benchmark: time to first byte and to fully rendered, cold and warm cache,
and page weight (KB of JS and CSS), in Chromium driven by Playwright.

Issue 18's goals: a dashboard with 10 blocks fully rendered in <= 1.5 s with a warm
cache on this machine, and <= 300 KB of JS excluding the chart and editor libraries
(loaded only by the pages that draw charts).

What runs: ``quarry serve`` (role all, SQLite, open mode) of the demo workspace plus a
generated ``apps/ten_blocks.app.yml`` (5 tables and 5 charts over the demo orders).
Each app's result is stored first (one visit runs it), so the timings are of pages
rendering stored results, as a viewer sees them.

Per page and round:

* **cold**: a new browser context (empty HTTP cache), one navigation;
* **warm**: a second navigation in that context (hashed assets come from the cache).

Measured from the Navigation Timing entry: ``ttfb`` = ``responseStart`` (from the
navigation start), ``dcl`` = DOMContentLoaded; ``full`` = until the page is fully
rendered — for a dashboard ``body[data-state=ready]`` with every chart's SVG drawn,
for the IDE the editor library loaded with the file in it and the compile status
shown, otherwise the ``load`` event. Medians (and worst) over ``--rounds``. Weight: bytes of
every JS and CSS response body of the cold load, split into Quarry's own files and
the vendored chart and editor libraries (CodeMirror on the IDE page).

    .venv/bin/python bench/web_bench.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, Response, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.processes import quarry_process

from quarry.demo import create_demo_workspace

CHROMIUM = "/usr/bin/chromium"
TEN_BLOCKS = """title: Ten blocks
description: Five tables and five charts over the demo orders (bench/web_bench.py).
tasks:
  - name: by_month
    type: execute_sql
    database: local
    sql_query: |
      SELECT strftime(order_date, '%Y-%m') AS month, round(sum(quantity * unit_price), 2) AS revenue
      FROM 'orders.csv' GROUP BY month ORDER BY month
  - name: by_category
    type: execute_sql
    database: local
    sql_query: |
      SELECT category, round(sum(quantity * unit_price), 2) AS revenue
      FROM 'orders.csv' GROUP BY category ORDER BY revenue DESC
  - name: by_product
    type: execute_sql
    database: local
    sql_query: |
      SELECT product, category, sum(quantity) AS units,
             round(sum(quantity * unit_price), 2) AS revenue
      FROM 'orders.csv' GROUP BY product, category ORDER BY revenue DESC LIMIT 25
display:
"""
for i in range(5):
    TEN_BLOCKS += (
        f"  - type: table\n    data: by_product\n    title: Products {i + 1}\n"
        f"  - type: {'line_chart' if i % 2 == 0 else 'bar_chart'}\n"
        f"    data: {'by_month' if i % 2 == 0 else 'by_category'}\n"
        f"    title: Chart {i + 1}\n"
        f"    x: {'month' if i % 2 == 0 else 'category'}\n    y: revenue\n"
    )

READY = (
    "() => document.body.dataset.state === 'ready' && "
    "[...document.querySelectorAll('.chart')].every(c => c.querySelector('svg'))"
)
# The IDE: the editor library loaded, the first file in it, the compile status shown.
IDE_READY = (
    "() => document.body.dataset.editor === 'ready' && !!document.querySelector('.cm-line')"
    " && document.getElementById('ide-compile').dataset.state !== undefined"
)


def _timing(page: Page) -> dict[str, float]:
    got: dict[str, float] = page.evaluate(
        "() => { const n = performance.getEntriesByType('navigation')[0];"
        " return {ttfb: n.responseStart, dcl: n.domContentLoadedEventEnd}; }"
    )
    return got


def _visit(page: Page, url: str, ready: str | None) -> dict[str, float]:
    page.goto(url, wait_until="load")
    if ready:
        page.wait_for_function(ready, timeout=120_000)
    full = float(page.evaluate("() => performance.now()"))
    return {**_timing(page), "full": full}


def _weights(browser: Browser, url: str, ready: str | None) -> dict[str, int]:
    sizes: dict[str, int] = {"own_js": 0, "vendor_js": 0, "css": 0}
    context = browser.new_context()
    page = context.new_page()

    def seen(response: Response) -> None:
        kind = response.headers.get("content-type", "")
        if "/static/" not in response.url or not ("javascript" in kind or "css" in kind):
            return
        size = len(response.body())
        if "css" in kind:
            sizes["css"] += size
        elif "/vendor/" in response.url:
            sizes["vendor_js"] += size
        else:
            sizes["own_js"] += size

    page.on("response", seen)
    _visit(page, url, ready)
    context.close()
    return sizes


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):7.0f} ms (worst {max(values):6.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = create_demo_workspace(tmp / "shop")
        (root / "apps" / "ten_blocks.app.yml").write_text(TEN_BLOCKS)
        for git in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "demo"]):
            subprocess.run(  # the IDE's git panel reads a repository
                ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", *git],
                cwd=root,
                check=True,
                capture_output=True,
            )
        env = {"QUARRY_DATA_DIR": str(tmp / "data"), "COLUMNS": "120"}
        with (
            quarry_process(["serve", str(root), "--name", "shop"], env, tmp / "log") as server,
            sync_playwright() as playwright,
        ):
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            pages = {
                "home": (f"{server.url}/", None),
                "runs": (f"{server.url}/runs", None),
                "dashboard (demo, 6 blocks)": (f"{server.url}/apps/sales_overview", READY),
                "dashboard (10 blocks)": (f"{server.url}/apps/ten_blocks", READY),
                "ide (an app file open)": (
                    f"{server.url}/ide/shop?file=apps/sales_overview.app.yml",
                    IDE_READY,
                ),
            }
            warmup = browser.new_page()
            for url, ready in pages.values():  # store each app's result once
                _visit(warmup, url, ready)
            warmup.close()
            results: dict[str, dict[str, list[float]]] = {}
            for _ in range(args.rounds):
                for name, (url, ready) in pages.items():
                    context = browser.new_context()
                    page = context.new_page()
                    cold = _visit(page, url, ready)
                    warm = _visit(page, url, ready)
                    context.close()
                    row = results.setdefault(name, {})
                    for key, value in cold.items():
                        row.setdefault(f"cold {key}", []).append(value)
                    for key, value in warm.items():
                        row.setdefault(f"warm {key}", []).append(value)
            print(
                f"Chromium {browser.version}, {args.rounds} rounds, medians; {os.cpu_count()} CPUs"
            )
            for name, row in results.items():
                print(f"\n{name}")
                for key in ("cold ttfb", "cold full", "warm ttfb", "warm full"):
                    print(f"  {key:10} {_median(row[key])}")
            print("\nweight of a cold load (response bodies, uncompressed)")
            for name, (url, ready) in pages.items():
                sizes: dict[str, Any] = _weights(browser, url, ready)
                print(
                    f"  {name:28} own JS {sizes['own_js'] / 1024:6.1f} KB, "
                    f"chart/editor libraries {sizes['vendor_js'] / 1024:6.1f} KB, "
                    f"CSS {sizes['css'] / 1024:5.1f} KB"
                )
            browser.close()


if __name__ == "__main__":
    main()
