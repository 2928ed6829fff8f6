"""Real processes: the compile boundary survives the workspace folder, co-booting
nodes migrate once, and the CLI's exit codes are fit for a user's CI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from quarry.demo import create_demo_workspace
from quarry.store.db import create_state_engine
from quarry.store.migrate import code_head
from tests.conftest import Backend
from tests.support.processes import quarry_process, start_quarry, wait_healthy

pytestmark = pytest.mark.slow


def _quarry(
    args: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "quarry", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def _snapshot(url: str) -> dict[str, bytes]:
    with httpx.Client(base_url=url, timeout=10) as client:
        base = "/api/v1/workspaces/shop"
        listing = client.get(f"{base}/definitions")
        out = {"listing": listing.content}
        for d in listing.json()["definitions"]:
            got = client.get(f"{base}/definitions/{d['kind']}/{d['name']}")
            assert got.status_code == 200
            out[f"{d['kind']}/{d['name']}"] = got.content
            out[f"etag {d['kind']}/{d['name']}"] = got.headers["etag"].encode()
        out["sql"] = client.get(f"{base}/revision/files/queries/monthly_revenue.sql").content
    return out


def test_definitions_survive_the_workspace_folder(backend: Backend, tmp_path: Path) -> None:
    root = create_demo_workspace(tmp_path / "shop")
    env = {**backend.process_env(), "QUARRY_DATA_DIR": str(tmp_path / "data")}
    compiled = _quarry(["compile", str(root), "--name", "shop"], env)
    assert compiled.returncode == 0, compiled.stderr
    with quarry_process(["serve"], env, tmp_path / "first.log") as first:
        before = _snapshot(first.url)
    shutil.rmtree(root)
    with quarry_process(["serve"], env, tmp_path / "second.log") as second:
        after = _snapshot(second.url)
    assert len(before) > 10
    assert after == before


def test_three_nodes_booting_together_migrate_once(empty_pg_database: str, tmp_path: Path) -> None:
    env = {
        "QUARRY_DATABASE_URL": empty_pg_database,
        "QUARRY_BLOB_URL": (tmp_path / "blobs").as_uri(),
        "QUARRY_DATA_DIR": str(tmp_path / "data"),
        # Migration lines are DEBUG on a person's screen; machine logs keep them at INFO.
        "QUARRY_LOG_FORMAT": "json",
    }
    nodes = [start_quarry(["serve"], env, tmp_path / f"node{i}.log") for i in range(3)]
    try:
        for node in nodes:
            wait_healthy(node)
        applied = [n for n in nodes if "migrations: applied" in n.log()]
        current = [n for n in nodes if "migrations: schema current" in n.log()]
        assert len(applied) == 1, [n.log() for n in nodes]
        assert len(current) == 2
    finally:
        for node in nodes:
            node.stop()
    engine = create_state_engine(empty_pg_database)
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    engine.dispose()
    assert versions == [code_head()]


def test_node_refuses_a_newer_schema(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    env = {"QUARRY_DATABASE_URL": f"sqlite:///{db}", "QUARRY_DATA_DIR": str(tmp_path / "d")}
    assert _quarry(["migrate"], env).returncode == 0
    engine = create_state_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    refused = _quarry(["serve"], env)
    assert refused.returncode == 1
    assert "newer than this release" in refused.stderr


def test_compile_check_for_a_users_ci(tmp_path: Path) -> None:
    root = create_demo_workspace(tmp_path / "shop")
    env = {"QUARRY_DATA_DIR": str(tmp_path / "data")}
    ok = _quarry(["compile", "--check"], env, cwd=root)
    assert ok.returncode == 0, ok.stderr
    assert "ok: 7 definitions" in ok.stdout
    assert not (tmp_path / "data").exists(), "--check must not create state"
    app = root / "apps" / "sales_overview.app.yml"
    app.write_text(app.read_text() + "\nunexpected_key: 1\n")
    bad = _quarry(["compile", "--check", str(root)], env)
    assert bad.returncode == 1
    assert bad.stdout.startswith("apps/sales_overview.app.yml:")
    assert "unexpected_key" in bad.stdout


def test_demo_command_serves_the_demo(tmp_path: Path) -> None:
    with quarry_process(
        ["demo", "--dir", str(tmp_path / "demo")], {}, tmp_path / "demo.log"
    ) as demo:
        page = httpx.get(f"{demo.url}/", timeout=10)
        assert page.status_code == 200 and "apps/sales_overview" in page.text
        wf = httpx.get(
            f"{demo.url}/api/v1/workspaces/demo/definitions/workflow/workflows/monthly_revenue"
        )
        assert wf.status_code == 200
        assert f"listening on {demo.url}/" in " ".join(demo.log().split())


def test_quarry_run_in_a_working_copy(tmp_path: Path) -> None:
    root = create_demo_workspace(tmp_path / "shop")
    (root / "workflows" / "export.workflow.yml").write_text(
        "tasks:\n  - name: regions\n    type: execute_sql\n    database: local\n"
        "    sql_query: select distinct region from 'orders.csv' order by region\n"
        "    export:\n      format: csv\n      path: out/regions.csv\n"
    )
    env = {"QUARRY_DATA_DIR": str(tmp_path / "data")}
    exported = _quarry(["run", "workflows/export"], env, cwd=root)
    assert exported.returncode == 0, exported.stderr
    lines = (root / "out" / "regions.csv").read_text().splitlines()
    assert [line.strip('"') for line in lines] == ["region", "East", "North", "South", "West"]
    ok = _quarry(["run", "workflows/region_report.procedure.yml"], env, cwd=root)
    assert ok.returncode == 0, ok.stderr
    assert "succeeded: run" in ok.stdout
    assert "tasks.0.iter.3.tasks.1 top_customers" in ok.stderr
    bad = _quarry(["run", "workflows/monthly_revenue", "--var", "nope=1"], env, cwd=root)
    assert bad.returncode == 1
    assert "nope" in bad.stderr
    missing = _quarry(["run", "workflows/absent"], env, cwd=root)
    assert missing.returncode == 1
    assert "absent" in missing.stderr


def test_worker_role_refuses_sqlite(tmp_path: Path) -> None:
    env = {"QUARRY_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}"}
    refused = _quarry(["worker"], env)
    assert refused.returncode == 1
    assert "needs a shared PostgreSQL database" in refused.stderr
