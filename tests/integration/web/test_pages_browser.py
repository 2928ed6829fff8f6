"""The web app in Chromium (Playwright), against a real ``quarry serve`` process on
SQLite with tokens required: each screen's main path as a person does it, axe-core on
every page (no serious or critical violation), no CSP violation or script error, and
workspace text containing markup shown as text. Screenshots are kept (see
``pages.screenshot_dir``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.integration.web.pages import (
    WORKSPACE,
    XSS_CELL,
    XSS_IMG,
    XSS_TITLE,
    Quarry,
    Watched,
    axe_violations,
    chromium,
    quarry_server,
    screenshot_dir,
    watch,
)

pytestmark = pytest.mark.slow
RUN_TIMEOUT_MS = 90_000  # an app or workflow run on this loaded 2-core machine


@pytest.fixture(scope="module")
def quarry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Quarry]:
    with quarry_server(tmp_path_factory.mktemp("web")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_dir(tmp_path_factory.mktemp("shots"))


def _sign_in(page: Page, quarry: Quarry, next_path: str = "/") -> None:
    page.goto(quarry.url + next_path)
    expect(page).to_have_url(re.compile(r"/sign-in\?next="))
    page.get_by_label("API token").fill(quarry.token)
    page.get_by_label("API token").press("Enter")
    expect(page).to_have_url(quarry.url + next_path)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    made = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def signed_in(context: BrowserContext, quarry: Quarry) -> Iterator[tuple[Page, Watched]]:
    page = context.new_page()
    watched = watch(page)
    _sign_in(page, quarry)
    yield page, watched
    assert watched.problems == []


def _check(page: Page, shots: Path, name: str) -> None:
    assert axe_violations(page) == [], name
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def test_sign_in_then_home_shows_the_workspace(
    context: BrowserContext, quarry: Quarry, shots: Path
) -> None:
    page = context.new_page()
    watched = watch(page)
    page.goto(quarry.url + "/runs")
    expect(page).to_have_title("Sign in · Quarry")
    _check(page, shots, "sign-in")
    page.get_by_label("API token").fill("qk_not_a_real_token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Sign-in failed")
    page.get_by_label("API token").fill(quarry.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(quarry.url + "/runs")
    cookie = next(c for c in context.cookies() if c["name"] == "quarry_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert page.evaluate("document.cookie").find("quarry_session") < 0, "HttpOnly"

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Home").click()
    expect(page).to_have_title("Home · Quarry")
    card = page.locator("article.workspace", has_text=WORKSPACE)
    expect(card).to_contain_text("Revision")
    expect(card.locator(".problems")).to_have_text("0 problems")
    expect(page.locator(".who")).to_contain_text("local")
    expect(page.locator(".who")).to_contain_text("admin")
    _check(page, shots, "home")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/sign-in"))
    page.goto(quarry.url + "/")
    expect(page).to_have_url(re.compile(r"/sign-in\?next=%2F"))
    assert watched.problems == []


def test_open_a_dashboard_change_a_control_download_csv(
    signed_in: tuple[Page, Watched], quarry: Quarry, shots: Path
) -> None:
    page, _ = signed_in
    page.get_by_role("link", name="Dashboards").first.click()
    expect(page).to_have_title("Dashboards · Quarry")
    _check(page, shots, "dashboards")
    page.get_by_role("link", name="Sales overview").click()
    # Nothing stored yet: the page starts an app run and follows it to the result.
    page.wait_for_selector("body[data-state=ready]", timeout=RUN_TIMEOUT_MS)
    expect(page.locator(".chart svg")).to_have_count(3)
    expect(page.locator("table.data").first).to_contain_text("$445,833.33")
    _check(page, shots, "dashboard")
    page.screenshot(path=str(shots / "dashboard-top.png"))  # the first screen, for the README

    page.get_by_label("Region", exact=True).select_option("North")
    expect(page).to_have_url(re.compile(r"region=North"))
    page.wait_for_selector("body[data-state=ready]", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("table.data").first).not_to_contain_text("$445,833.33")

    products = page.locator("section.block", has_text="Top ten products")
    products.get_by_role("button", name="units").click()
    expect(products.locator("th[aria-sort=ascending]")).to_have_text("units")
    units = [int(t) for t in products.locator("tbody td:nth-child(3)").all_inner_texts()]
    assert units == sorted(units) and len(units) == 10
    products.get_by_role("button", name="units").press("Enter")  # the keyboard: descending
    expect(products.locator("th[aria-sort=descending]")).to_have_text("units")
    units = [int(t) for t in products.locator("tbody td:nth-child(3)").all_inner_texts()]
    assert units == sorted(units, reverse=True)

    with page.expect_download() as got:
        page.get_by_role("button", name="Download CSV of Key figures").click()
    data = Path(got.value.path()).read_text()
    assert got.value.suggested_filename == "key-figures.csv"
    header, row = data.splitlines()[:2]
    assert header == "orders,customers,units,revenue,average_order_value"
    assert row.startswith("1390,"), data


def test_start_a_run_and_watch_it_finish(
    signed_in: tuple[Page, Watched], quarry: Quarry, shots: Path
) -> None:
    page, _ = signed_in
    page.get_by_role("link", name="Runs").first.click()
    expect(page).to_have_title("Runs · Quarry")
    page.get_by_label("Workflow").select_option(f"{WORKSPACE}:workflows/monthly_revenue")
    page.get_by_role("button", name="Start run").click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]+$"))
    page.wait_for_selector("body[data-run-state=finished]", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#run-state")).to_have_text("succeeded")
    expect(page.locator("#events")).to_contain_text("run.succeeded")
    expect(page.locator("#events")).to_contain_text("step.finished")
    steps = page.locator("#run-detail table.list tbody tr")
    expect(steps.first).to_contain_text("succeeded")
    expect(page.get_by_role("link", name="CSV").first).to_be_visible()
    page.locator("#run-detail summary", has_text="SQL").first.click()
    expect(page.locator("#run-detail pre").first).to_contain_text("queries/monthly_revenue.sql")
    expect(page.locator("#run-detail pre").first).to_contain_text("SELECT")
    page.get_by_role("button", name="Show the rows of tasks.0").click()
    rows = page.locator("#rows-1 tbody tr")
    expect(rows).to_have_count(24)  # monthly_revenue: 24 months
    _check(page, shots, "run")

    page.get_by_role("button", name="Retry").click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]+$"))
    page.wait_for_selector("body[data-run-state=finished]", timeout=RUN_TIMEOUT_MS)

    page.goto(quarry.url + "/runs?state=succeeded&kind=workflow")
    expect(page.get_by_label("State")).to_have_value("succeeded")
    rows = page.locator("table.list tbody tr")
    assert rows.count() >= 2
    page.goto(quarry.url + "/runs?state=failed")
    expect(page.get_by_text("No runs match.")).to_be_visible()
    page.goto(quarry.url + "/runs")
    _check(page, shots, "runs")


def test_a_failed_run_shows_its_error_and_a_running_one_cancels(
    signed_in: tuple[Page, Watched], quarry: Quarry, shots: Path
) -> None:
    page, _ = signed_in
    page.goto(quarry.url + "/runs")
    page.get_by_label("Workflow").select_option(f"{WORKSPACE}:workflows/broken")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_selector("body[data-run-state=finished]", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#run-state")).to_have_text("failed")
    expect(page.locator("#run-detail p.error").first).to_contain_text("no_such_table")
    expect(page.locator("#events")).to_contain_text("step.failed")
    _check(page, shots, "run-failed")

    page.goto(quarry.url + "/runs")
    page.get_by_label("Workflow").select_option(f"{WORKSPACE}:workflows/slow")
    page.get_by_role("button", name="Start run").click()
    expect(page.locator("#events")).to_contain_text("step.started", timeout=RUN_TIMEOUT_MS)
    page.get_by_role("button", name="Cancel run").click()
    expect(page.get_by_role("status").first).to_have_text("Cancel requested.")
    page.wait_for_selector("body[data-run-state=finished]", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#run-state")).to_have_text("cancelled")


def test_pause_a_schedule_with_the_keyboard_only(
    signed_in: tuple[Page, Watched], quarry: Quarry, shots: Path
) -> None:
    page, _ = signed_in
    page.goto(quarry.url + "/schedules")
    row = page.locator("tr", has_text="schedules/nightly")
    expect(row).to_contain_text("0 3 * * *")
    pause = page.get_by_role("button", name="Pause schedules/nightly")
    for _ in range(60):  # Tab through the page until the button has the focus
        if pause.evaluate("b => b === document.activeElement"):
            break
        page.keyboard.press("Tab")
    else:
        raise AssertionError("the Pause button cannot be reached with Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("Paused schedules/nightly.")
    expect(row.locator(".badge").first).to_have_text("paused")
    _check(page, shots, "schedules")
    page.get_by_role("button", name="Resume schedules/nightly").click()
    expect(page.get_by_role("status")).to_have_text("Resumed schedules/nightly.")
    page.get_by_role("button", name="Trigger schedules/nightly").click()
    expect(page.get_by_role("status")).to_contain_text("Triggered schedules/nightly: run")
    page.get_by_role("link", name="schedules/nightly").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Schedule schedules/nightly")
    fires = page.locator("table.list tbody tr")
    expect(fires).to_have_count(1)
    expect(fires.first.get_by_role("link")).to_be_visible()  # the run it started
    _check(page, shots, "schedule")
    page.get_by_role("link", name="Its runs").click()
    expect(page.get_by_label("Schedule")).to_have_value(f"{WORKSPACE}:schedules/nightly")
    expect(page.locator("table.list tbody tr")).to_have_count(1)


def test_explore_a_topic(signed_in: tuple[Page, Watched], quarry: Quarry, shots: Path) -> None:
    page, _ = signed_in
    page.get_by_role("link", name="Explore").click()
    expect(page.get_by_label("Topic")).to_have_value("sales")
    page.get_by_label("orders.revenue").check()
    page.get_by_label("orders.region").check()
    page.get_by_role("button", name="Run query").click()
    page.wait_for_selector("body[data-state=ready], body[data-state=error]")
    assert page.locator("body").get_attribute("data-state") == "ready", page.inner_text("#x-error")
    expect(page.locator("#x-sql")).to_contain_text("SELECT")
    expect(page.locator("#x-rows tbody tr")).to_have_count(4)
    expect(page.locator("#x-rows")).to_contain_text("North")
    expect(page.locator("#x-chart svg rect")).to_have_count(4)  # one bar per region
    task = page.locator("#x-task")
    expect(task).to_contain_text("type: semantic_query")
    expect(task).to_contain_text('measures: ["orders.revenue"]')
    expect(task).to_contain_text('dimensions: ["orders.region"]')
    _check(page, shots, "explore")


def test_workspace_markup_is_shown_as_text(
    signed_in: tuple[Page, Watched], quarry: Quarry, shots: Path
) -> None:
    page, _ = signed_in
    page.goto(quarry.url + "/dashboards")
    page.get_by_role("link", name="Escapes", exact=True).click()
    # the title is rendered by the server (Jinja) and again by the page script
    expect(page.locator("h1#app-title")).to_have_text(XSS_TITLE)
    expect(page).to_have_title(f"{XSS_TITLE} · Quarry")
    page.wait_for_selector("body[data-state=ready]", timeout=RUN_TIMEOUT_MS)
    table = page.locator("table.data")
    expect(table).to_contain_text(XSS_CELL)
    expect(table).to_contain_text(XSS_IMG)
    expect(page.locator(".block-markdown")).to_contain_text("Plain")
    assert page.locator("#blocks script, #blocks img").count() == 0
    assert page.evaluate("window.__xss") is None
    page.screenshot(path=str(shots / "escapes.png"), full_page=True)
