"""The stat cache (git's index, for a workspace): unchanged stats skip reading and
hashing, changes and racy entries are hashed again, and revisions come out identical
with and without it; incremental reference checks report what a full check reports."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from quarry.core.errors import CompileFailed
from quarry.factory import statcache
from quarry.factory.compiler import analyze
from quarry.factory.local import compile_local
from quarry.factory.statcache import RACY_NS, StatCache
from quarry.node.services import Services
from quarry.store.tables import workspaces

# The stat cache is a file beside the working copy; revisions are stored as usual.
pytestmark = pytest.mark.backend_agnostic

SQL = "queries/top_products.sql"
WORKFLOW = "workflows/monthly_revenue.workflow.yml"


def _cache_file(workspace: Path) -> Path:
    (found,) = (workspace / ".quarry" / "statcache").glob("*.json")
    return found


def _current(svc: Services) -> str | None:
    with svc.engine.connect() as conn:
        return conn.execute(select(workspaces.c.current_revision_id)).scalar_one()  # type: ignore[no-any-return]


def _tamper(workspace: Path, relpath: str, *, written_ns: int) -> None:
    """Pretend ``relpath`` changed without its stat changing: store a wrong hash."""
    path = _cache_file(workspace)
    data = json.loads(path.read_text())
    data["hashes"][data["paths"].index(relpath)] = "0" * 64
    data["written_ns"] = written_ns
    path.write_text(json.dumps(data))


def test_lookup_trusts_only_unchanged_and_settled_entries() -> None:
    old = (10, 1_000_000_000, 7, 1_000_000_000)
    fresh = (10, 9_000_000_000, 7, 9_000_000_000)
    cache = StatCache(root="/w", written_ns=10_000_000_000)
    cache.keys = {"old.sql": old, "fresh.sql": fresh}
    cache.hashes = {"old.sql": "a" * 64, "fresh.sql": "b" * 64}
    assert cache.lookup("old.sql", old) == "a" * 64
    assert cache.lookup("old.sql", (11, *old[1:])) is None  # size changed
    assert cache.lookup("old.sql", (10, 2_000_000_000, 7, 1_000_000_000)) is None  # mtime
    assert cache.lookup("old.sql", (10, 1_000_000_000, 8, 1_000_000_000)) is None  # inode
    assert cache.lookup("fresh.sql", fresh) is None  # within RACY_NS of the write: racy
    assert cache.lookup("missing.sql", old) is None


def test_unusable_cache_files_are_empty(tmp_path: Path) -> None:
    assert statcache.load(None, tmp_path) is None
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert statcache.load(bad, tmp_path).keys == {}  # type: ignore[union-attr]
    bad.write_text(json.dumps({"version": 2, "root": "/elsewhere", "written_ns": 0}))
    assert statcache.load(bad, tmp_path).keys == {}  # type: ignore[union-attr]
    good = {"version": 2, "root": str(tmp_path), "written_ns": 0, "checked": [None, None]}
    good |= {"paths": ["a.sql"], "stats": [1, 2, 3, 4], "hashes": ["h"], "revision": None}
    bad.write_text(json.dumps(good))
    assert statcache.load(bad, tmp_path).keys == {"a.sql": (1, 2, 3, 4)}  # type: ignore[union-attr]
    for broken in ({"stats": [1, 2, 3]}, {"stats": [1, 2, 3, "4"]}, {"hashes": [7]}):
        bad.write_text(json.dumps(good | broken))
        assert statcache.load(bad, tmp_path).keys == {}  # type: ignore[union-attr]


def test_revision_is_identical_with_and_without_the_cache(
    services: Services, workspace: Path
) -> None:
    first = compile_local(services.engine, services.store, "local", workspace, "shop")
    assert first.revision_id == analyze(workspace).revision_id
    assert _cache_file(workspace).is_file()
    again = compile_local(services.engine, services.store, "local", workspace, "shop")
    assert again.unchanged and again.revision_id == first.revision_id
    sql = workspace / SQL
    sql.write_text(sql.read_text() + "\n-- changed\n")
    changed = compile_local(services.engine, services.store, "local", workspace, "shop")
    assert changed.revision_id != first.revision_id
    assert changed.revision_id == analyze(workspace).revision_id
    assert changed.blobs_uploaded == 1


def test_same_size_change_with_a_new_mtime_is_detected(services: Services, workspace: Path) -> None:
    first = compile_local(services.engine, services.store, "local", workspace, "shop")
    sql = workspace / SQL
    text = sql.read_text()
    st = sql.stat()
    sql.write_text(text[:-1] + ("x" if text[-1] != "x" else "y"))
    assert sql.stat().st_size == st.st_size
    os.utime(sql, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    changed = compile_local(services.engine, services.store, "local", workspace, "shop")
    assert changed.revision_id != first.revision_id
    assert changed.revision_id == analyze(workspace).revision_id


def test_racy_entry_is_hashed_again(services: Services, workspace: Path) -> None:
    """The cache was written within RACY_NS of the file's mtime/ctime: a change in the
    same tick would keep the stat, so the entry is not trusted."""
    first = compile_local(services.engine, services.store, "local", workspace, "shop")
    mtime = (workspace / SQL).stat().st_mtime_ns
    _tamper(workspace, SQL, written_ns=mtime + RACY_NS // 2)
    again = compile_local(services.engine, services.store, "local", workspace, "shop")
    assert again.unchanged and again.revision_id == first.revision_id


def test_settled_entry_is_trusted_as_git_does(services: Services, workspace: Path) -> None:
    """Known limitation, as in git: a change that keeps size, mtime, ctime and inode
    (a forged stored hash stands for one here) is not seen by the scan. Bytes read
    later (to upload or parse) are hashed again, so they are never stored under it."""
    first = compile_local(services.engine, services.store, "local", workspace, "shop")
    _tamper(workspace, SQL, written_ns=time.time_ns() + 10 * RACY_NS)
    with pytest.raises(CompileFailed, match="changed while compiling"):
        compile_local(services.engine, services.store, "local", workspace, "shop")
    _tamper(workspace, SQL, written_ns=time.time_ns() + 10 * RACY_NS)
    trusted = analyze(workspace, stat_cache=_cache_file(workspace))
    assert trusted.revision_id != first.revision_id  # the forged hash was used unread
    assert analyze(workspace).revision_id == first.revision_id
    assert _current(services) == first.revision_id


def test_deleting_a_referenced_sql_file_still_fails_at_the_reference(
    services: Services, workspace: Path
) -> None:
    compile_local(services.engine, services.store, "local", workspace, "shop")
    (workspace / SQL).unlink()
    with pytest.raises(CompileFailed) as cached:
        compile_local(services.engine, services.store, "local", workspace, "shop")
    with pytest.raises(CompileFailed) as uncached:
        analyze(workspace)
    assert cached.value.problems == uncached.value.problems
    rendered = [str(p) for p in cached.value.problems]
    assert any(r.startswith(f"{WORKFLOW}:") and SQL in r for r in rendered), rendered
    assert all(p.line > 1 or p.column > 1 for p in cached.value.problems)


def test_removing_a_referenced_view_fails_the_unchanged_referrers(
    services: Services, workspace: Path
) -> None:
    compile_local(services.engine, services.store, "local", workspace, "shop")
    views = sorted((workspace / "semantics").glob("*.view.yml"))
    views[0].unlink()
    with pytest.raises(CompileFailed) as cached:
        compile_local(services.engine, services.store, "local", workspace, "shop")
    with pytest.raises(CompileFailed) as uncached:
        analyze(workspace)
    assert cached.value.problems == uncached.value.problems


def test_a_changed_file_is_checked_incrementally(services: Services, workspace: Path) -> None:
    compile_local(services.engine, services.store, "local", workspace, "shop")
    wf = workspace / WORKFLOW
    wf.write_text(wf.read_text().replace(f"sql_file: {SQL}", "sql_file: queries/nope.sql", 1))
    with pytest.raises(CompileFailed) as cached:
        compile_local(services.engine, services.store, "local", workspace, "shop")
    with pytest.raises(CompileFailed) as uncached:
        analyze(workspace)
    assert cached.value.problems == uncached.value.problems
    assert "queries/nope.sql" in str(cached.value.problems[0])


def test_a_file_changed_after_the_scan_is_not_stored_under_the_old_hash(
    tmp_path: Path, workspace: Path
) -> None:
    cache = tmp_path / "statcache.json"
    analyze(workspace, stat_cache=cache)
    data = json.loads(cache.read_text())
    data["written_ns"] = time.time_ns() + 10 * RACY_NS  # every entry is trusted
    cache.write_text(json.dumps(data))
    analysis = analyze(workspace, stat_cache=cache)
    (sql,) = [f for f in analysis.files if f.path == SQL]
    assert analysis.tree.content(sql) == (workspace / SQL).read_bytes()
    other = next(f for f in analysis.files if f.role == "sql" and f.path != SQL)
    (workspace / other.path).write_text("select 'changed after the scan'")
    with pytest.raises(CompileFailed, match="changed while compiling"):
        analysis.tree.content(other)
