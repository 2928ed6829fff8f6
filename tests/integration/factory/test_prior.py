"""The base revision's definitions taken from the stat cache: the same revision, rows,
files and errors as when they come from the database, and the database is asked
only when the cache does not describe the base revision (or a full reference check
needs stored references)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from quarry.core.errors import CompileFailed
from quarry.definitions.kinds import classify_path
from quarry.factory.compiler import Known, analyze, known_from_revision
from quarry.factory.local import compile_local
from quarry.factory.scan import _kind
from quarry.node.services import Services
from quarry.store import revisions as rq
from quarry.store.tables import workspaces

WORKFLOW = "workflows/monthly_revenue.workflow.yml"


def _cache_file(workspace: Path) -> Path:
    (found,) = (workspace / ".quarry" / "statcache").glob("*.json")
    return found


def _state(svc: Services) -> tuple[str, str, list[rq.DefinitionRow], list[rq.FileRow]]:
    with svc.engine.connect() as conn:
        ws_id, rev = conn.execute(select(workspaces.c.id, workspaces.c.current_revision_id)).one()
        return ws_id, rev, rq.list_definitions(conn, ws_id, rev), rq.list_files(conn, ws_id, rev)


def _edit(workspace: Path) -> None:
    wf = workspace / WORKFLOW
    wf.write_text(wf.read_text().replace("Monthly revenue", "Revenue per month", 1))


def _forget_revision(workspace: Path) -> None:
    path = _cache_file(workspace)
    data = json.loads(path.read_text())
    data["revision"] = None
    path.write_text(json.dumps(data))


def _no_database() -> Known:
    raise AssertionError("the stat cache describes the base revision: no database load")


def test_the_cache_records_the_revision_it_validated(services: Services, workspace: Path) -> None:
    compile_local(services.engine, services.store, "local", workspace, "shop")
    _, rev, rows, files = _state(services)
    facts = json.loads(_cache_file(workspace).read_text())["revision"]
    assert facts["id"] == rev
    assert sorted(facts["paths"]) == sorted(r.path for r in rows)
    assert set(facts["blobs"]) == {f.blob_hash for f in files}
    # the agent's context document comes from its references
    assert any(t for t in facts["targets"].values())


def test_recompile_from_the_cache_equals_one_from_the_database(
    services: Services, workspace: Path, tmp_path: Path
) -> None:
    compile_local(services.engine, services.store, "local", workspace, "shop")
    ws_id, base, _, _ = _state(services)
    _edit(workspace)
    cache = _cache_file(workspace)
    saved = cache.read_bytes()
    from_cache = analyze(workspace, _no_database, stat_cache=cache, known_revision=base)
    assert from_cache.parsed == 1 and from_cache.reused == len(from_cache.definitions) - 1
    assert from_cache.base_blobs is not None
    cache.write_bytes(saved)
    _forget_revision(workspace)

    def database() -> Known:
        return known_from_revision(services.engine, ws_id, base)

    from_db = analyze(workspace, database, stat_cache=cache, known_revision=base)
    assert from_db.base_blobs is None
    uncached = analyze(workspace)
    assert from_cache.revision_id == from_db.revision_id == uncached.revision_id
    assert sorted(from_cache.definitions) == sorted(from_db.definitions)
    assert sorted(from_cache.definitions) == sorted(uncached.definitions)
    assert from_cache.files == from_db.files == uncached.files
    result = compile_local(services.engine, services.store, "local", workspace, "shop")
    assert result.promoted and result.parsed == 1 and result.blobs_uploaded == 0
    _, rev, rows, files = _state(services)
    assert rev == uncached.revision_id
    assert sorted(rows) == sorted(uncached.definitions)
    assert {f.path for f in files} == {f.path for f in uncached.files if f.role != "definition"}


def test_a_cache_of_another_revision_is_not_used(services: Services, workspace: Path) -> None:
    compile_local(services.engine, services.store, "local", workspace, "shop")
    _edit(workspace)
    with pytest.raises(AssertionError, match="no database load"):
        analyze(workspace, _no_database, stat_cache=_cache_file(workspace), known_revision="other")


def test_a_failed_compile_keeps_no_revision_in_the_cache(
    services: Services, workspace: Path
) -> None:
    good = compile_local(services.engine, services.store, "local", workspace, "shop")
    wf = workspace / WORKFLOW
    text = wf.read_text()
    wf.write_text(text + "\n  bad: [unclosed\n")
    with pytest.raises(CompileFailed):
        compile_local(services.engine, services.store, "local", workspace, "shop")
    assert json.loads(_cache_file(workspace).read_text())["revision"] is None
    wf.write_text(text)
    again = compile_local(services.engine, services.store, "local", workspace, "shop")
    assert again.revision_id == good.revision_id and again.unchanged
    assert json.loads(_cache_file(workspace).read_text())["revision"]["id"] == good.revision_id


def test_a_new_file_checks_every_reference_with_stored_refs(
    services: Services, workspace: Path
) -> None:
    """A path came, so the fingerprint changed: unchanged files' refs are checked
    again, with the stored refs from the database, and report what a full check does."""
    compile_local(services.engine, services.store, "local", workspace, "shop")
    (workspace / "queries" / "top_products.sql").unlink()
    (workspace / "queries" / "extra.sql").write_text("select 1")
    with pytest.raises(CompileFailed) as cached:
        compile_local(services.engine, services.store, "local", workspace, "shop")
    with pytest.raises(CompileFailed) as uncached:
        analyze(workspace)
    assert cached.value.problems == uncached.value.problems
    assert any("top_products.sql" in str(p) for p in cached.value.problems)


def test_damaged_revision_facts_are_ignored(services: Services, workspace: Path) -> None:
    first = compile_local(services.engine, services.store, "local", workspace, "shop")
    path = _cache_file(workspace)
    data = json.loads(path.read_text())
    data["revision"]["kinds"] = data["revision"]["kinds"][:-1]  # columns out of step
    path.write_text(json.dumps(data))
    _edit(workspace)
    result = compile_local(services.engine, services.store, "local", workspace, "shop")
    assert result.promoted and result.parsed == result.definitions  # nothing reused
    assert result.revision_id != first.revision_id
    assert result.revision_id == analyze(workspace).revision_id


@pytest.mark.parametrize(
    "relpath",
    [
        "config.yml",
        "sub/config.yml",
        "a/b.workflow.yml",
        "a/.workflow.yml",
        "a/x.y.workflow.yaml",
        "a/b.procedure.yml",
        "a/b.view.yml",
        "a/b.topic.yaml",
        "a/b.agent.yml",
        "a/b.app.yml",
        "a/b.unknown.yml",
        "a/b.yml",
        "a/.yml",
        "a.b/c.yml",
        "a.b/c.view.yml",
        "top.workflow.yml",
        "a/b.WORKFLOW.yml",
    ],
)
def test_memoised_classification_agrees_with_classify_path(relpath: str) -> None:
    assert _kind(relpath) == classify_path(relpath)
    assert _kind(relpath) == classify_path(relpath)  # from the memo the second time
