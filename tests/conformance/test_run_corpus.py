"""The runnable part of the conformance corpus runs, and its results equal the same
SQL run on DuckDB directly (both backends; real compile, store, DuckDB)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from quarry.factory.local import compile_local
from quarry.node.services import Services, build_services
from quarry.runtime.connectors import BlobCache, Connections
from quarry.runtime.engine import MemoryJournal, run_workflow
from quarry.runtime.engine.results import ListOutput, MapOutput, TableOutput, TextOutput
from quarry.runtime.source import RevisionSource
from tests.conformance.corpus import FULL
from tests.conftest import Backend


@pytest.fixture
def services(backend: Backend, tmp_path: Path) -> Iterator[Services]:
    svc = build_services(backend.settings(data_dir=tmp_path / "data"))
    yield svc
    svc.close()


def _direct(root: Path, sql: str) -> pa.Table:
    con = duckdb.connect()
    try:
        con.execute(f"SET file_search_path = '{root / 'data'}'")
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()


def _table(output: object) -> pa.Table:
    assert isinstance(output, TableOutput)
    return output.table


def test_runnable_workflow_matches_duckdb(services: Services, tmp_path: Path) -> None:
    root = shutil.copytree(FULL, tmp_path / "full")
    result = compile_local(services.engine, services.store, "local", root, "full")
    source = RevisionSource(
        services.catalog,
        services.catalog.workspace("local", "full", fresh=True),
        result.revision_id,
    )
    connections = Connections(source, BlobCache(tmp_path / "cache"))
    try:
        run = run_workflow(
            source,
            "workflows/runnable.workflow.yml",
            None,
            connections=connections,
            journal=MemoryJournal(),
        )
    finally:
        connections.close()
    revenue_sql = (root / "sql" / "revenue.sql").read_text()
    expected = _direct(root, revenue_sql)
    assert _table(run.outputs["by_query"]).equals(expected)
    assert _table(run.outputs["by_file"]).equals(expected)

    loop = run.outputs["per_region"]
    assert isinstance(loop, ListOutput)
    for region, item in zip(expected.column("region").to_pylist(), loop.items, strict=True):
        want = _direct(
            root,
            f"select count(*) as n from 'orders.csv' where region = '{region}' and amount >= 5",
        )
        assert _table(item["orders"]).equals(want)

    choose = run.outputs["choose"]
    assert isinstance(choose, MapOutput) and choose.outputs["picked"] == TextOutput("Europe")
    sub = run.outputs["sub"]
    assert isinstance(sub, MapOutput) and sub.outputs["echo"] == TextOutput("EU")
    rows = expected.to_pylist()
    report = "".join(f"{r['region']}={r['revenue']};" for r in rows)
    assert run.outputs["report"] == TextOutput(report)
