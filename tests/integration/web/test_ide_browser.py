"""The IDE in Chromium (Playwright) against a real ``quarry serve`` process on SQLite
with tokens required, its workspace a git repository: open a file, break it and see
the problem inline (the editor's schema check at once, the Factory's compile problem
at its file:line over the live compile status), fix it, save, commit, and see the
dashboard change; a save conflict showing both versions; "Run this" making a draft
run; staging (Stage all, Unstage one, commit the staged set only; staging and
unstaging with the keyboard); the page with the keyboard alone; axe-core with no
serious violation; no CSP violation or script error. Screenshots are kept
(``pages.screenshot_dir``)."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from quarry.demo import create_demo_workspace
from tests.integration.web.pages import (
    WORKSPACE,
    Quarry,
    Watched,
    axe_violations,
    chromium,
    screenshot_dir,
    watch,
)
from tests.integration.web.pages import _token as make_token
from tests.support.processes import quarry_process

pytestmark = pytest.mark.slow
APP = "apps/sales_overview.app.yml"
COMPILE_TIMEOUT_MS = 60_000  # a debounced compile on this loaded 2-core machine


def _git(root: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)


@pytest.fixture(scope="module")
def quarry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Quarry]:
    tmp = tmp_path_factory.mktemp("ide")
    root = create_demo_workspace(tmp / WORKSPACE)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "The demo workspace")
    # An origin to pull from and push to: a bare repository on this machine.
    _git(tmp, "init", "-q", "--bare", "-b", "main", "origin.git")
    _git(root, "remote", "add", "origin", str(tmp / "origin.git"))
    _git(root, "push", "-q", "-u", "origin", "main")
    env = {
        "QUARRY_DATA_DIR": str(tmp / "data"),
        "QUARRY_AUTH": "tokens",
        "COLUMNS": "120",
        "QUARRY_GIT_ALLOW_LOCAL_ORIGINS": "1",
    }
    with quarry_process(["serve", str(root), "--name", WORKSPACE], env, tmp / "serve.log") as srv:
        yield Quarry(srv, make_token(env, tmp), root)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_dir(tmp_path_factory.mktemp("shots"))


@pytest.fixture
def ide(browser: Browser, quarry: Quarry) -> Iterator[tuple[Page, Watched]]:
    context: BrowserContext = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    watched = watch(page)
    page.goto(quarry.url + "/ide")
    expect(page).to_have_url(re.compile(r"/sign-in\?next="))
    page.get_by_label("API token").fill(quarry.token)
    page.get_by_label("API token").press("Enter")
    # one workspace: straight in, the first file opened (and named in the URL)
    expect(page).to_have_url(re.compile(re.escape(f"{quarry.url}/ide/{WORKSPACE}") + r"(\?|$)"))
    expect(page.locator("body")).to_have_attribute("data-editor", "ready")
    expect(page.locator("#ide-path")).not_to_have_text("No file open")  # the first file
    # Saves, commits and git reads each run a Factory call (git processes among them)
    # on this shared 2-core machine: wait longer than Playwright's 5 s for each.
    expect.set_options(timeout=20_000)
    try:
        yield page, watched
        assert watched.problems == []
    finally:
        expect.set_options(timeout=5_000)
        context.close()


def _git_out(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def _put(quarry: Quarry, path: str, content: str) -> None:
    """Save a file through the file API, as another editor would."""
    bearer = {"Authorization": f"Bearer {quarry.token}"}
    with httpx.Client(base_url=quarry.url, headers=bearer, timeout=30) as c:
        url = f"/api/v1/workspaces/{WORKSPACE}/files/{path}"
        got = c.get(url)
        expected = got.headers["X-Quarry-Content-Hash"] if got.status_code == 200 else None
        put = c.put(url, json={"content": content, "expected_hash": expected})
        assert put.status_code == 200, put.text


def _editor(page: Page) -> Locator:
    return page.locator(".cm-content")


def _open(page: Page, path: str) -> None:
    page.locator(f'button.file[data-path="{path}"]').click()
    expect(page.locator("#ide-path")).to_have_text(path)


def _compile(page: Page, state: str) -> None:
    expect(page.locator("#ide-compile")).to_have_attribute(
        "data-state", state, timeout=COMPILE_TIMEOUT_MS
    )


def test_break_a_file_see_it_inline_fix_save_commit_and_the_dashboard_changes(
    ide: tuple[Page, Watched], quarry: Quarry, shots: Path
) -> None:
    page, _ = ide
    expect(page).to_have_title(f"IDE: {WORKSPACE} · Quarry")
    expect(page.locator("#ide-branch")).to_have_text("main")
    _open(page, APP)
    expect(_editor(page)).to_contain_text("title: Sales overview")

    # Break it: a key the app format does not have (apps refuse unknown keys).
    _editor(page).click()
    page.keyboard.press("Control+Home")
    page.keyboard.type("colour: red\n")
    # The editor's own schema check flags it while typing, before any save.
    expect(page.locator(".cm-lintRange-error").first).to_be_visible(timeout=10_000)
    page.keyboard.press("Control+s")
    expect(page.locator("#ide-notice")).to_contain_text("Saved")
    # The Factory's compile problem arrives over the live status, at its file:line.
    _compile(page, "failed")
    problem = page.locator("#ide-problems li.problem").first
    expect(problem).to_contain_text(f"{APP}:1:")
    expect(problem).to_contain_text("colour")
    expect(page.locator(f'button.file[data-path="{APP}"] .badge')).to_have_text("1")
    # Inline at its line: the compile's own message beside the editor's schema check.
    page.locator(".cm-lint-marker-error").first.hover()
    expect(page.locator(".cm-tooltip-lint")).to_contain_text("unknown field 'colour'")
    expect(page.locator(".cm-tooltip-lint")).to_contain_text("unknown key 'colour'")
    assert axe_violations(page) == []
    page.screenshot(path=str(shots / "ide-problem.png"))

    # Fix it and change the title; save with the keyboard shortcut.
    _editor(page).click()
    page.keyboard.press("Control+Home")
    page.keyboard.press("Shift+ArrowDown")
    page.keyboard.press("Delete")
    page.keyboard.press("End")
    page.keyboard.type(" (edited in the IDE)")
    expect(page.locator("#ide-dirty")).to_have_text("(unsaved)")
    page.get_by_role("button", name="Save").click()
    _compile(page, "succeeded")
    expect(page.locator("#ide-problem-count")).to_have_text("0")
    assert "(edited in the IDE)" in (quarry.root / APP).read_text()

    # Stage, unstage, commit the staged set. Another change is saved beside it (a
    # note, through the API): it is staged with Stage all, then unstaged again.
    note = "docs/staging_note.md"
    _put(quarry, note, "# Not part of the retitle\n")
    staged, changes = page.locator("#git-staged"), page.locator("#git-changes")
    page.reload()  # the note was written behind the page's back: read the status again
    expect(page.locator("body")).to_have_attribute("data-editor", "ready")
    expect(changes.locator("li", has_text=APP)).to_contain_text("modified")
    expect(changes.locator("li", has_text=note)).to_contain_text("new")
    expect(staged).to_contain_text("Nothing staged.")
    page.get_by_role("button", name="Stage all", exact=True).click()
    expect(staged.locator("li", has_text=APP)).to_contain_text("modified")
    expect(staged.locator("li", has_text=note)).to_contain_text("added")
    expect(changes).to_contain_text("No changes.")
    expect(page.locator("#git-staged-count")).to_have_text("2")
    page.get_by_role("button", name=f"Staged diff: {APP}", exact=True).click()
    expect(page.locator("#git-diff-text")).to_contain_text("+title: Sales overview (edited")
    page.get_by_role("button", name=f"Unstage {note}", exact=True).click()
    expect(page.locator("#ide-notice")).to_contain_text(f"Unstaged {note}.")
    expect(changes.locator("li", has_text=note)).to_contain_text("new")
    expect(staged.locator("li")).to_have_count(1)
    assert _git_out(quarry.root, "diff", "--cached", "--name-only") == APP
    assert axe_violations(page) == []
    page.screenshot(path=str(shots / "ide.png"))
    page.get_by_label("Commit message").fill("Retitle the sales dashboard")
    page.get_by_role("button", name="Commit").click()
    expect(page.locator("#ide-notice")).to_contain_text("Committed", timeout=COMPILE_TIMEOUT_MS)
    expect(page.locator("#git-log")).to_contain_text("Retitle the sales dashboard")
    expect(staged).to_contain_text("Nothing staged.")
    expect(changes.locator("li")).to_have_count(1)  # the note, still not committed
    expect(changes.locator("li", has_text=note)).to_contain_text("new")
    assert _git_out(quarry.root, "show", "--name-only", "--format=", "HEAD") == APP
    # Nothing staged: Commit says how, and commits nothing.
    page.get_by_label("Commit message").fill("Nothing staged")
    page.get_by_role("button", name="Commit").click()
    expect(page.locator("#ide-error")).to_contain_text("Nothing is staged")
    page.get_by_role("button", name=f"Diff of {note}", exact=True).click()
    expect(page.locator("#git-diff-text")).to_contain_text("+# Not part of the retitle")
    (quarry.root / note).unlink()  # leave the working copy as the other tests expect
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-editor", "ready")
    expect(changes).to_contain_text("No changes.")
    page.get_by_role("button", name="Show diff").click()
    expect(page.locator("#git-diff-text")).to_have_text("No differences.")

    # The dashboard shows the new title.
    page.goto(quarry.url + f"/workspaces/{WORKSPACE}/apps/sales_overview")
    expect(page.locator("h1")).to_contain_text("(edited in the IDE)")


def test_a_save_conflict_shows_both_versions(ide: tuple[Page, Watched], quarry: Quarry) -> None:
    page, _ = ide
    path = "workflows/monthly_revenue.workflow.yml"
    _open(page, path)
    _editor(page).click()
    page.keyboard.press("Control+End")
    page.keyboard.type("# mine\n")
    # Someone else saves the file first (through the same API, with its hash).
    bearer = {"Authorization": f"Bearer {quarry.token}"}
    with httpx.Client(base_url=quarry.url, headers=bearer) as c:
        url = f"/api/v1/workspaces/{WORKSPACE}/files/{path}"
        got = c.get(url)
        theirs = got.text + "# theirs\n"
        put = c.put(
            url,
            json={"content": theirs, "expected_hash": got.headers["X-Quarry-Content-Hash"]},
        )
        assert put.status_code == 200, put.text
    page.get_by_role("button", name="Save").click()
    conflict = page.locator("#ide-conflict")
    expect(conflict).to_be_visible()
    expect(page.locator("#conflict-mine")).to_contain_text("# mine")
    expect(page.locator("#conflict-theirs")).to_contain_text("# theirs")
    assert "# mine" not in (quarry.root / path).read_text(), "nothing was overwritten"
    assert axe_violations(page) == []
    page.get_by_role("button", name="Overwrite with mine").click()
    expect(conflict).to_be_hidden()
    expect(page.locator("#ide-notice")).to_contain_text("Saved")
    saved = (quarry.root / path).read_text()
    assert "# mine" in saved and "# theirs" not in saved


def test_run_this_makes_a_draft_run_and_links_to_it(
    ide: tuple[Page, Watched], quarry: Quarry
) -> None:
    page, _ = ide
    _open(page, "workflows/region_report.procedure.yml")
    run = page.get_by_role("button", name="Run this workflow")
    expect(run).to_be_visible()
    run.click()
    link = page.get_by_role("link", name="Open the run")
    expect(link).to_be_visible(timeout=30_000)
    link.click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]+$"))
    expect(page.locator("h1")).to_contain_text("region_report")


def test_the_ide_with_the_keyboard_alone(ide: tuple[Page, Watched], quarry: Quarry) -> None:
    page, _ = ide
    page.locator("body").focus()

    def tab_to(selector: str, limit: int = 60) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate(f"document.activeElement.matches({selector!r})"):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to('button.file[data-path="config.yml"]')
    page.keyboard.press("Enter")
    expect(page.locator("#ide-path")).to_have_text("config.yml")
    tab_to(".cm-content")
    page.keyboard.type("# by keyboard\n")
    tab_to("#ide-save")  # Tab leaves the editor: no keyboard trap
    page.keyboard.press("Enter")
    expect(page.locator("#ide-notice")).to_contain_text("Saved config.yml")
    stage = '#git-changes button[aria-label="Stage config.yml"]'
    expect(page.locator(stage)).to_be_visible()
    tab_to(stage)
    page.keyboard.press("Enter")
    expect(page.locator("#git-staged li", has_text="config.yml")).to_be_visible()
    # the keyboard is not dropped to the top of the page when the lists change
    assert page.evaluate("!!document.activeElement.closest('.ide-git')")
    tab_to('#git-staged button[aria-label="Unstage config.yml"]')
    page.keyboard.press("Space")
    expect(page.locator("#git-changes li", has_text="config.yml")).to_be_visible()
    tab_to(stage)
    page.keyboard.press("Enter")
    expect(page.locator("#git-staged li", has_text="config.yml")).to_be_visible()
    tab_to("#git-message")
    page.keyboard.type("Keyboard commit")
    tab_to("#git-commit button[type=submit]")
    page.keyboard.press("Enter")
    expect(page.locator("#ide-notice")).to_contain_text("Committed", timeout=COMPILE_TIMEOUT_MS)
    assert _git_out(quarry.root, "show", "--name-only", "--format=", "HEAD") == "config.yml"


def test_schema_completion_offers_the_keys_of_the_format(ide: tuple[Page, Watched]) -> None:
    page, _ = ide
    _open(page, "workflows/monthly_revenue.workflow.yml")
    _editor(page).click()
    page.keyboard.press("Control+End")
    page.keyboard.type("\ndescri")
    option = page.locator(".cm-tooltip-autocomplete li", has_text="description")
    expect(option).to_be_visible(timeout=10_000)
    page.keyboard.press("Enter")
    expect(_editor(page)).to_contain_text("description: ")
    # An enum value: a task's type, completed from the task formats.
    page.keyboard.press("Control+a")
    page.keyboard.type("tasks:\n- name: t\ntype: exec")
    expect(page.locator(".cm-tooltip-autocomplete li", has_text="execute_sql")).to_be_visible()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+z")  # not saved: leave the file as it was


def test_branches_switch_pull_and_push(
    ide: tuple[Page, Watched], quarry: Quarry, tmp_path: Path
) -> None:
    page, _ = ide
    origin = quarry.root.parent / "origin.git"
    page.get_by_label("New branch").fill("retitle")
    page.get_by_role("button", name="Create branch").click()
    expect(page.locator("#ide-notice")).to_contain_text("Created branch retitle")
    page.get_by_label("Branch", exact=True).select_option("retitle")
    page.get_by_role("button", name="Switch").click()
    expect(page.locator("#ide-branch")).to_have_text("retitle")
    page.get_by_label("Branch", exact=True).select_option("main")
    page.get_by_role("button", name="Switch").click()
    expect(page.locator("#ide-branch")).to_have_text("main")

    # Push what the other tests committed; then someone else pushes a commit to the
    # origin, and Pull fast-forwards to it.
    page.get_by_role("button", name="Push").click()
    expect(page.locator("#ide-notice")).to_contain_text("Pushed main")
    other = tmp_path / "other"
    _git(tmp_path, "clone", "-q", str(origin), str(other))
    (other / "docs" / "from_origin.md").write_text("# Pushed elsewhere\n")
    _git(other, "add", "-A")
    _git(other, "commit", "-q", "-m", "A page from elsewhere")
    _git(other, "push", "-q", "origin", "main")
    page.get_by_role("button", name="Pull").click()
    expect(page.locator("#ide-notice")).to_contain_text("Pulled", timeout=COMPILE_TIMEOUT_MS)
    expect(page.locator('button.file[data-path="docs/from_origin.md"]')).to_be_visible()
    expect(page.locator("#git-log")).to_contain_text("A page from elsewhere")

    # Commit here, then Push: the origin's main is this commit.
    _open(page, "docs/from_origin.md")
    _editor(page).click()
    page.keyboard.press("Control+End")
    page.keyboard.type("Edited in the IDE.\n")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#ide-notice")).to_contain_text("Saved")
    page.get_by_label("Commit message").fill("Edit the page from elsewhere")
    # Stage only this file (other tests left other files changed).
    page.get_by_role("button", name="Stage docs/from_origin.md", exact=True).click()
    expect(page.locator("#git-staged li")).to_have_count(1)
    page.get_by_role("button", name="Commit").click()
    expect(page.locator("#ide-notice")).to_contain_text("Committed", timeout=COMPILE_TIMEOUT_MS)
    page.get_by_role("button", name="Push").click()
    expect(page.locator("#ide-notice")).to_contain_text("Pushed main")
    pushed = subprocess.run(
        ["git", "--git-dir", str(origin), "log", "-1", "--format=%s", "main"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert pushed.stdout.strip() == "Edit the page from elsewhere"


def test_workspace_text_with_markup_shows_as_text(
    ide: tuple[Page, Watched], quarry: Quarry
) -> None:
    """A file's content, its compile problem (the key is quoted in the message) and
    the diff all carry markup: every one is shown as text, nothing runs."""
    page, _ = ide
    path = "apps/markup.app.yml"
    page.get_by_label("New file").fill(path)
    page.get_by_role("button", name="Create file").click()
    expect(page.locator("#ide-path")).to_have_text(path)
    _editor(page).click()
    page.keyboard.insert_text(
        'title: "<script>window.__xss = 1</script>"\n"<img src=x onerror=window.__xss=2>": 1\n'
    )
    page.get_by_role("button", name="Save").click()
    problem = page.locator("#ide-problems li.problem", has_text="unknown field")
    expect(problem).to_contain_text("<img src=x onerror=window.__xss=2>", timeout=60_000)
    page.get_by_role("button", name="Show diff").click()
    expect(page.locator("#git-diff-text")).to_contain_text("<script>window.__xss = 1</script>")
    expect(_editor(page)).to_contain_text("<script>window.__xss = 1</script>")
    assert page.evaluate("window.__xss") is None
    assert page.locator("#ide-problems img, #git-diff-text script, .cm-content img").count() == 0
    page.get_by_role("button", name=f"Diff of {path}").click()
    expect(page.locator("#git-diff-text")).to_have_attribute("aria-label", f"Diff of {path}")
    # Delete it (leaving the workspace compiling for the other tests).
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete file").click()
    expect(page.locator("#ide-notice")).to_contain_text(f"Deleted {path}")
    expect(page.locator(f'button.file[data-path="{path}"]')).to_have_count(0)
    assert not (quarry.root / path).exists()
