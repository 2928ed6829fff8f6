"""Workflow SQL in DuckDB cannot reach past its own dataset (issue 13, item 1).

Each test is one escape, run as globex's editor through the real executor of a
two-tenant fleet; each asserts the run failed with a clear error and that nothing
of the host or of tenant acme was read or written.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import duckdb
import pytest

from tests.integration.runtime.connectors.conftest import (
    FLEET_SECRET,
    Fleet,
    failure,
    files_under,
    running_fleet,
)
from tests.support.tenancy import ACME, ACME_WS, s3_url

SANDBOX_REFUSED = "disabled by configuration"
LOCKED = "the configuration has been locked"


def one_step(sql: str, database: str = "local") -> str:
    return (
        "tasks:\n  - name: attempt\n    type: execute_sql\n"
        f"    database: {database}\n    sql_query: {json.dumps(sql)}\n"
    )


def attempt(fleet: Fleet, sql: str) -> dict[str, object]:
    fleet.add_workflows({"attempt": one_step(sql)})
    run = fleet.run("attempt")
    assert run["state"] == "failed", run
    return run


def test_a_workflow_still_reads_its_own_dataset_by_file_name(fleet: Fleet) -> None:
    fleet.add_workflows(
        {"own": one_step("SELECT count(*) AS n FROM 'orders.csv'")},
    )
    run = fleet.run("own")
    assert run["state"] == "succeeded", run
    assert fleet.step_output(run["id"], "tasks.0")["rows"][0]["n"] > 0


def test_reading_a_host_file_is_refused(fleet: Fleet) -> None:
    run = attempt(fleet, "SELECT content FROM read_text('/etc/passwd')")
    assert SANDBOX_REFUSED in failure(run)
    assert "root:" not in json.dumps(run)


def test_reading_the_process_environment_is_refused(fleet: Fleet) -> None:
    run = attempt(fleet, "SELECT content FROM read_text('/proc/self/environ')")
    assert SANDBOX_REFUSED in failure(run)
    text = json.dumps(run)
    assert FLEET_SECRET not in text and fleet.state_url not in text


def _acme_private_file(fleet: Fleet) -> tuple[Path, Path]:
    """A data file only acme has, in acme's working copy and in the worker's cache."""
    root = fleet.dep.roots[ACME]
    (root / ".db" / "acme_only.csv").write_text("secret\nacme-private-3f9a\n")
    svc = fleet.dep.svc
    from quarry.factory.local import compile_local

    result = compile_local(svc.engine, svc.store, ACME, root, ACME_WS, data_dir=fleet.data_dir)
    done = fleet.run("monthly_revenue", who=f"{ACME}:editor")
    assert done["state"] == "succeeded", done
    cached = fleet.data_dir / "cache" / "datasets" / result.revision_id / ".db" / "acme_only.csv"
    assert cached.is_file()
    return root / ".db" / "acme_only.csv", cached


def test_reading_another_tenants_cached_dataset_is_refused(fleet: Fleet) -> None:
    _working, cached = _acme_private_file(fleet)
    run = attempt(fleet, f"SELECT * FROM read_csv('{cached}')")
    assert SANDBOX_REFUSED in failure(run)
    assert "acme-private" not in json.dumps(run)
    blobs = fleet.data_dir / "cache" / "blobs"
    run = attempt(fleet, f"SELECT * FROM read_text('{blobs}/*')")
    assert SANDBOX_REFUSED in failure(run)
    assert "acme-private" not in json.dumps(run)


def test_reading_another_tenants_working_copy_is_refused(fleet: Fleet) -> None:
    working, _cached = _acme_private_file(fleet)
    run = attempt(fleet, f"SELECT * FROM read_csv('{working}')")
    assert SANDBOX_REFUSED in failure(run)
    assert "acme-private" not in json.dumps(run)


def test_copy_to_a_host_path_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    target = Path("/tmp") / f"quarry-escape-{uuid.uuid4().hex}.csv"
    run = attempt(fleet, f"COPY (SELECT 42 AS x) TO '{target}'")
    assert SANDBOX_REFUSED in failure(run)
    assert not target.exists()


def test_attach_of_a_host_file_is_refused(fleet: Fleet) -> None:
    target = Path("/tmp") / f"quarry-escape-{uuid.uuid4().hex}.db"
    run = attempt(fleet, f"ATTACH '{target}' AS stolen")
    assert SANDBOX_REFUSED in failure(run)
    assert not target.exists()


@pytest.mark.parametrize(
    "sql", ["INSTALL httpfs", "LOAD httpfs", "LOAD '/tmp/evil.duckdb_extension'"]
)
def test_installing_or_loading_an_extension_is_refused(fleet: Fleet, sql: str) -> None:
    extensions = Path.home() / ".duckdb"
    before = files_under(extensions)
    run = attempt(fleet, sql)
    assert "disabled" in failure(run)
    assert files_under(extensions) == before


@pytest.mark.parametrize(
    "sql",
    [
        "SET enable_external_access = true",
        "RESET enable_external_access",
        "SET allowed_directories = ['/']",
        "SET lock_configuration = false",
        "SET autoload_known_extensions = true",
    ],
)
def test_the_sandbox_cannot_be_configured_away(fleet: Fleet, sql: str) -> None:
    fleet.add_workflows(
        {
            "undo": "tasks:\n"
            "  - {name: undo, type: execute_sql, database: local,"
            f" sql_query: {json.dumps(sql)}}}\n"
            "  - {name: read, type: execute_sql, database: local,"
            " sql_query: \"SELECT content FROM read_text('/etc/passwd')\"}\n"
        }
    )
    run = fleet.run("undo")
    assert run["state"] == "failed", run
    assert LOCKED in failure(run)
    assert "root:" not in json.dumps(run)


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_writes_into_the_readable_folder_touch_nothing_shared(fleet: Fleet) -> None:
    """The folder SQL may read is the run's private snapshot: even a write that DuckDB
    allows there (it would, as root) cannot change the shared blob cache or the
    revision's cached folder, and the snapshot is gone after the run."""
    cache = fleet.data_dir / "cache"
    fleet.add_workflows(
        {
            "scribble": "tasks:\n"
            "  - name: where\n    type: execute_sql\n    database: local\n"
            "    sql_query: SELECT unnest(current_setting('allowed_directories')) AS d\n"
            "  - name: overwrite\n    type: execute_sql\n    database: local\n"
            "    sql_query: COPY (SELECT 'pwned' AS x) TO '{{ where.d[0] }}orders.csv'"
            " (FORMAT csv, USE_TMP_FILE false)\n"
            "  - name: overwrite2\n    type: execute_sql\n    database: local\n"
            "    sql_query: COPY (SELECT 'pwned' AS x) TO '{{ where.d[1] }}orders.csv'"
            " (FORMAT csv, USE_TMP_FILE false)\n"
            "  - name: plant\n    type: execute_sql\n    database: local\n"
            "    sql_query: ATTACH '{{ where.d[0] }}planted.db' AS planted\n"
            "  - name: plant2\n    type: execute_sql\n    database: local\n"
            "    sql_query: ATTACH '{{ where.d[1] }}planted2.db' AS planted2\n"
        }
    )
    first = fleet.run("scribble")
    blobs_before = {p.name: p.read_bytes() for p in (cache / "blobs").iterdir()}
    datasets_before = _hashes(cache / "datasets")
    second = fleet.run("scribble")
    for run in (first, second):
        assert "pwned" not in json.dumps(run.get("steps", []))
    for name, data in blobs_before.items():
        assert hashlib.sha256(data).hexdigest() == name
        assert (cache / "blobs" / name).read_bytes() == data
    for blob in (cache / "blobs").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    assert _hashes(cache / "datasets") == datasets_before
    assert not any("planted" in p.name for p in files_under(cache))
    assert list((cache / "runs").iterdir()) == []
    # the dataset still reads as it did, for both tenants
    fleet.add_workflows({"own": one_step("SELECT count(*) AS n FROM 'orders.csv'")})
    assert fleet.run("own")["state"] == "succeeded"
    assert fleet.run("monthly_revenue", who=f"{ACME}:editor")["state"] == "succeeded"


def test_a_duckdb_path_outside_the_workspace_is_refused(fleet: Fleet) -> None:
    target = Path("/tmp") / f"quarry-escape-{uuid.uuid4().hex}.duckdb"
    config = fleet.config_with(f"{{name: outside, type: duckdb, path: {target}}}")
    fleet.add_workflows(
        {"outside": one_step("CREATE TABLE planted AS SELECT 1 AS x", "outside")}, config=config
    )
    run = fleet.run("outside")
    assert run["state"] == "failed", run
    assert "QUARRY_DUCKDB_ALLOWED_PATHS" in failure(run) and "outside" in failure(run)
    assert not target.exists()


def test_an_operator_allowed_duckdb_path_is_opened(
    fleet_env: None,
    request: pytest.FixtureRequest,
    pg_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """QUARRY_DUCKDB_ALLOWED_PATHS lets a path: outside the workspace through, and only
    that one: the database is attached, the sandbox still holds around it."""
    shared = tmp_path / "operator" / "shared.duckdb"
    shared.parent.mkdir()
    with duckdb.connect(str(shared)) as con:
        con.execute("CREATE TABLE facts AS SELECT 7 AS x")
    with running_fleet(
        pg_database, s3_url(request, monkeypatch), tmp_path, duckdb_allowed_paths=[shared.parent]
    ) as fleet:
        config = fleet.config_with(f"{{name: shared, type: duckdb, path: {shared}}}")
        fleet.add_workflows(
            {
                "shared": one_step("SELECT x FROM facts", "shared"),
                "shared_escape": one_step("SELECT * FROM read_text('/etc/passwd')", "shared"),
            },
            config=config,
        )
        run = fleet.run("shared")
        assert run["state"] == "succeeded", run
        assert fleet.step_output(run["id"], "tasks.0")["rows"] == [{"x": 7}]
        escape = fleet.run("shared_escape")
        assert escape["state"] == "failed" and SANDBOX_REFUSED in failure(escape)
