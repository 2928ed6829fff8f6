"""Workflows of a compiled revision on real DuckDB, on both state backends."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from quarry.node.services import Services
from quarry.runtime.engine import (
    ListOutput,
    MapOutput,
    SqlFailed,
    StepFailed,
    TableOutput,
    TemplateFailed,
    TextOutput,
    UnknownWorkflow,
    VariableError,
)
from quarry.runtime.engine.results import Output
from quarry.runtime.engine.templating import strict_templates
from tests.integration.runtime.conftest import CountingStore, Runner

REGIONS = ["East", "North", "South", "West"]


def direct(workspace: Path, sql: str) -> pa.Table:
    """The same SQL straight on DuckDB over the working copy's dataset folder."""
    con = duckdb.connect(config={"file_search_path": str(workspace / ".db")})
    try:
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()


def table(output: Output) -> pa.Table:
    assert isinstance(output, TableOutput)
    return output.table


def test_loop_and_sub_workflow_match_direct_duckdb(runner: Runner, workspace: Path) -> None:
    result = runner.run("workflows/regions_nested")

    assert table(result.outputs["region_list"]).column("region").to_pylist() == REGIONS
    loop = result.outputs["regions"]
    assert isinstance(loop, ListOutput) and len(loop.items) == 4
    expected_report = ""
    for region, item in zip(REGIONS, loop.items, strict=True):
        sub = item["per_region"]
        assert isinstance(sub, MapOutput)
        want = direct(
            workspace,
            "SELECT category, count(*) AS orders, round(sum(quantity * unit_price), 2) AS revenue "
            f"FROM 'orders.csv' WHERE region = '{region}' GROUP BY category "
            "HAVING count(*) >= 0 ORDER BY category",
        )
        assert table(sub.outputs["totals"]).equals(want)
        customers = direct(
            workspace,
            "SELECT count(DISTINCT customer_id) AS customers FROM 'orders.csv' "
            f"WHERE region = '{region}'",
        )
        assert table(item["customers"]).equals(customers)
        expected_report += f"{round(sum(want.column('revenue').to_pylist()), 2)};"
    report = result.outputs["report"]
    assert isinstance(report, TextOutput) and report.text.strip() == expected_report


def test_demo_workflows_run_like_direct_duckdb(runner: Runner, workspace: Path) -> None:
    result = runner.run("workflows/region_report.procedure.yml")
    sub = result.outputs["monthly_trend"]
    assert isinstance(sub, MapOutput)
    sql = (workspace / "queries" / "monthly_revenue.sql").read_text()
    assert table(sub.outputs["monthly_revenue"]).equals(direct(workspace, sql))
    loop = result.outputs["regions"]
    assert isinstance(loop, ListOutput)
    north = loop.items[0]["top_customers"]
    assert table(north).num_rows == 5
    assert set(table(north).column("region").to_pylist()) == {"North"}
    report = result.outputs["report"]
    assert isinstance(report, TextOutput)
    assert "| category | orders | revenue |" in report.text
    assert "# Company-wide trend" in report.text and "| 2024-12 |" in report.text


def test_dataset_blobs_are_fetched_once_per_content_hash(
    make_runner: Callable[..., Runner], services: Services, workspace: Path
) -> None:
    counting = CountingStore(services.store)
    runner = make_runner(workspace, store=counting)
    runner.run("workflows/monthly_revenue")
    blob_gets = {k: n for k, n in counting.gets.items() if "/cas/" in k}
    data_files = runner.source.dataset_files(".db")
    assert len(data_files) == 3
    data_keys = [k for k in blob_gets if any(k.endswith(f.blob_hash) for f in data_files)]
    assert len(data_keys) == 3 and all(blob_gets[k] == 1 for k in data_keys)
    assert runner.cache.fetches == 3

    before = dict(counting.gets)
    runner.run("workflows/monthly_revenue")
    runner.run("workflows/regions_nested")
    assert [k for k in data_keys if counting.gets[k] != before[k]] == []
    assert runner.cache.fetches == 3

    # A new revision that changes one data file fetches that file only.
    orders = workspace / ".db" / "orders.csv"
    orders.write_bytes(orders.read_bytes() + b"99999,2024-12-31,1,North,Pen,Office,1,1.00\n")
    second = make_runner(workspace, store=counting)
    second.cache = runner.cache
    assert second.source.revision_id != runner.source.revision_id
    second.run("workflows/monthly_revenue")
    assert runner.cache.fetches == 4
    folder = runner.cache.datasets / second.source.revision_id / ".db"
    assert sorted(p.name for p in folder.iterdir()) == [
        "customers.csv",
        "orders.csv",
        "products.csv",
    ]


def test_sqlquote_and_bound_params_round_trip_a_quote(runner: Runner) -> None:
    result = runner.run("workflows/quoting")
    quoted = table(result.outputs["quoted"]).to_pylist()
    assert quoted == [{"value": "O'Brien", "n": 7}]
    bound = table(result.outputs["bound"]).to_pylist()
    assert bound == [{"value": "O'Brien", "same": True}]
    assert table(result.outputs["matched"]).to_pylist() == [{"n": 0}]

    hana = runner.run("workflows/quoting", {"name": "Hana Okafor"})
    assert table(hana.outputs["matched"]).to_pylist() == [{"n": 1}]


@pytest.mark.parametrize(
    "attack",
    [
        "x' OR '1'='1",
        "'; DROP TABLE t; --",
        "x\\' OR 1=1 --",
        "$1",
        "%s %(x)s",
    ],
)
def test_injection_in_a_variable_stays_a_value(runner: Runner, attack: str) -> None:
    result = runner.run("workflows/quoting", {"name": attack})
    assert table(result.outputs["quoted"]).column("value").to_pylist() == [attack]
    assert table(result.outputs["bound"]).to_pylist() == [{"value": attack, "same": True}]
    assert table(result.outputs["matched"]).to_pylist() == [{"n": 0}]


def test_variables_defaults_missing_and_wrong_type(runner: Runner) -> None:
    ok = runner.run("workflows/region_totals", {"region": "West"})
    assert ok.variables == {"region": "West", "min_orders": 0}
    assert set(table(ok.outputs["totals"]).column("category").to_pylist()) >= {"Electronics"}

    strict = runner.run("workflows/region_totals", {"region": "West", "min_orders": 10_000})
    assert table(strict.outputs["totals"]).num_rows == 0

    with pytest.raises(VariableError, match="needs variable 'region'") as missing:
        runner.run("workflows/region_totals")
    assert missing.value.details["variable"] == "region"
    with pytest.raises(VariableError, match="'min_orders' expected integer, got string") as typed:
        runner.run("workflows/region_totals", {"region": "West", "min_orders": "5"})
    assert typed.value.code == "invalid_variables" and typed.value.status_code == 400
    with pytest.raises(VariableError, match="has no variable 'regoin'"):
        runner.run("workflows/region_totals", {"regoin": "West"})
    with pytest.raises(VariableError, match="expected one of"):
        runner.run("workflows/exporting", {"region": "Atlantis"})


def test_exports_reach_the_callback(runner: Runner, workspace: Path) -> None:
    result = runner.run("workflows/exporting", {"region": "South"})
    by_path = {path: (data, fmt) for path, data, fmt in runner.exports}
    assert set(by_path) == {
        "exports/south/categories.csv",
        "exports/products.json",
        "exports/query.sql",
        "exports/note.txt",
    }
    data, fmt = by_path["exports/south/categories.csv"]
    assert fmt == "csv"
    assert pa_csv.read_csv(pa.py_buffer(data)).equals(table(result.outputs["categories"]))
    products = json.loads(by_path["exports/products.json"][0])
    assert [p["product_id"] for p in products] == [1, 2, 3]
    assert by_path["exports/query.sql"][0] == b"SELECT 1 AS one WHERE 'x' = $1"
    categories = table(result.outputs["categories"]).num_rows
    assert by_path["exports/note.txt"] == (f"{categories} categories in South".encode(), "txt")


def test_failing_sql_names_the_step(runner: Runner) -> None:
    with pytest.raises(SqlFailed) as failed:
        runner.run("workflows/broken", {"which": "sql"})
    err = failed.value
    assert err.step == "tasks.1.if.0.tasks.0" and err.task == "bad_sql"
    assert "no_such_file.csv" in err.message and err.message.startswith("step tasks.1.if.0")
    assert err.to_json()["details"]["step"] == "tasks.1.if.0.tasks.0"
    failed_events = [e for e in runner.events if e["event"] == "step_failed"]
    assert [e["step"] for e in failed_events] == ["tasks.1.if.0.tasks.0", "tasks.1"]
    assert runner.events[-1]["event"] == "run_failed"


def test_unknown_workflows(runner: Runner) -> None:
    with pytest.raises(UnknownWorkflow, match=r"no workflow named 'workflows/nope\.workflow\.yml'"):
        runner.run("workflows/nope.workflow.yml")
    with pytest.raises(UnknownWorkflow) as sub:
        runner.run("workflows/broken", {"which": "sub"})
    assert sub.value.step == "tasks.1.if.1.tasks.0" and sub.value.task == "missing"
    assert "workflows/does_not_exist" in sub.value.message


def test_unsupported_task_types(runner: Runner) -> None:
    # agent tasks run now (quarry.agents, installed by build_services): this one's model
    # key is not set, which fails the step saying so (tests/integration/agents).
    with pytest.raises(StepFailed, match="key_var names 'OPENAI_API_KEY', which is not set"):
        runner.run("workflows/broken", {"which": "unsupported"})
    fine = runner.run("workflows/broken")
    branch = fine.outputs["choose"]
    assert isinstance(branch, MapOutput)
    assert branch.outputs["fine"] == TextOutput("ok 1")


def test_undefined_names_lenient_by_default_errors_when_strict(runner: Runner) -> None:
    # Oxy's lenient default: an undefined name prints as nothing (issue #15) ...
    lenient = runner.run("workflows/broken", {"which": "undefined"}).outputs["choose"]
    assert isinstance(lenient, MapOutput)
    assert lenient.outputs["undefined_name"] == TextOutput("")
    # ... and strict templates make it an error naming it and the task.
    with (
        strict_templates(True),
        pytest.raises(TemplateFailed, match="`no_such_name` is undefined") as undefined,
    ):
        runner.run("workflows/broken", {"which": "undefined"})
    assert undefined.value.task == "undefined_name"


def test_duckdb_database_file_shipped_in_the_revision(
    make_runner: Callable[..., Runner], tmp_path: Path
) -> None:
    root = tmp_path / "filews"
    (root / "db").mkdir(parents=True)
    (root / "workflows").mkdir()
    con = duckdb.connect(str(root / "db" / "shop.duckdb"))
    con.execute("CREATE TABLE sales AS SELECT * FROM range(5) t(n)")
    con.close()
    (root / "config.yml").write_text(
        "databases:\n"
        "  - {name: files, type: duckdb, dataset: db/}\n"
        "  - {name: shop, type: duckdb, path: db/shop.duckdb}\n"
        "models: []\n"
    )
    (root / "workflows" / "read.workflow.yml").write_text(
        "tasks:\n"
        "  - {name: total, type: execute_sql, database: shop,"
        " sql_query: 'SELECT sum(n)::int AS s FROM sales'}\n"
    )
    (root / "workflows" / "write.workflow.yml").write_text(
        "tasks:\n"
        "  - {name: add, type: execute_sql, database: shop,"
        " sql_query: 'INSERT INTO sales VALUES (99)'}\n"
    )
    runner = make_runner(root)
    result = runner.run("workflows/read")
    assert table(result.outputs["total"]).to_pylist() == [{"s": 10}]
    # The shipped file is shared by every run on the worker: it is opened read-only.
    with pytest.raises(SqlFailed, match=r"step tasks.0 \(add\): .*read-only"):
        runner.run("workflows/write")
    assert table(runner.run("workflows/read").outputs["total"]).to_pylist() == [{"s": 10}]
