"""The Postgres connector on a real server, and replay of steps with side effects."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest
from sqlalchemy.engine import make_url

from quarry.runtime.connectors import Connections
from quarry.runtime.engine import (
    ListOutput,
    MapOutput,
    MemoryJournal,
    RunCancelled,
    SqlFailed,
    StepResult,
    TableOutput,
    TextOutput,
    run_task_list,
)
from quarry.runtime.engine.results import Output
from tests.integration.runtime.conftest import Runner

CONFIG = """\
databases:
  - name: local
    type: duckdb
    dataset: data/
  - name: warehouse
    type: postgres
    host_var: T_PGHOST
    port_var: T_PGPORT
    user_var: T_PGUSER
    database_var: T_PGDB
models: []
"""

AUDIT = """\
variables:
  who:
    type: string
    default: "O'Brien"
tasks:
  - name: record
    type: execute_sql
    database: warehouse
    sql_query: |
      INSERT INTO audit (who, note) VALUES ({{ who | param }}, 'it''s 100% done')
      RETURNING id, who
  - name: check
    type: execute_sql
    database: warehouse
    sql_query: |
      SELECT count(*) AS n, max(who) AS who FROM audit
      WHERE who = {{ param(who) }} AND note LIKE '%done' AND {{ who | sqlquote }} = who
  - name: tens
    type: loop_sequential
    values: [1, 2, 3]
    concurrency: 3
    tasks:
      - name: q
        type: execute_sql
        database: warehouse
        sql_query: SELECT {{ tens.value | param }}::int * 10 AS v, 1.5::numeric AS d
  - name: empty
    type: execute_sql
    database: warehouse
    sql_query: |
      SELECT 1::int AS i, 'x'::text AS t, current_date AS d, true AS b WHERE false
  - name: odd_types
    type: execute_sql
    database: warehouse
    sql_query: |
      SELECT * FROM (VALUES ('{"a": 1}'::jsonb, ARRAY[1, 2], 'x'::text),
                            ('[1, "b"]'::jsonb, ARRAY[3], NULL)) AS v(doc, arr, t)
  - name: done
    type: formatter
    template: "{{ check.n[0] }} row(s) for {{ who }}"
"""

SLOW = """\
tasks:
  - name: waits
    type: loop_sequential
    values: [1, 2, 3]
    concurrency: 3
    tasks:
      - name: nap
        type: execute_sql
        database: warehouse
        sql_query: SELECT {{ waits.value | param }}::int AS v, pg_sleep(0.3)::text AS slept
"""


@pytest.fixture
def pg_conninfo(pg_database: str) -> dict[str, str]:
    url = make_url(pg_database)
    info = {
        "T_PGHOST": url.host or "127.0.0.1",
        "T_PGPORT": str(url.port or 5432),
        "T_PGUSER": url.username or "postgres",
        "T_PGDB": url.database or "",
    }
    with psycopg.connect(**_kwargs(info), autocommit=True) as conn:
        conn.execute("CREATE TABLE audit (id serial PRIMARY KEY, who text, note text)")
    return info


def _kwargs(info: dict[str, str]) -> dict[str, str]:
    return {
        "host": info["T_PGHOST"],
        "port": info["T_PGPORT"],
        "user": info["T_PGUSER"],
        "dbname": info["T_PGDB"],
    }


def audit_rows(info: dict[str, str]) -> list[tuple[object, ...]]:
    with psycopg.connect(**_kwargs(info)) as conn:
        return conn.execute("SELECT who, note FROM audit ORDER BY id").fetchall()


@pytest.fixture
def pg_runner(
    make_runner: Callable[..., Runner], tmp_path: Path, pg_conninfo: dict[str, str]
) -> Runner:
    root = tmp_path / "pgws"
    (root / "workflows").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data" / "t.csv").write_text("a\n1\n")
    (root / "config.yml").write_text(CONFIG)
    (root / "workflows" / "audit.workflow.yml").write_text(AUDIT)
    (root / "workflows" / "slow.workflow.yml").write_text(SLOW)
    return make_runner(root, secrets=dict(pg_conninfo))


def table(output: Output) -> pa.Table:
    assert isinstance(output, TableOutput)
    return output.table


def test_postgres_binds_values_and_returns_arrow(
    pg_runner: Runner, pg_conninfo: dict[str, str]
) -> None:
    result = pg_runner.run("workflows/audit")
    assert table(result.outputs["record"]).column("who").to_pylist() == ["O'Brien"]
    assert table(result.outputs["check"]).to_pylist() == [{"n": 1, "who": "O'Brien"}]
    assert audit_rows(pg_conninfo) == [("O'Brien", "it's 100% done")]
    tens = result.outputs["tens"]
    assert isinstance(tens, ListOutput)
    assert [table(i["q"]).to_pylist() for i in tens.items] == [
        [{"v": 10, "d": Decimal("1.5")}],
        [{"v": 20, "d": Decimal("1.5")}],
        [{"v": 30, "d": Decimal("1.5")}],
    ]
    empty = table(result.outputs["empty"])
    assert empty.num_rows == 0
    assert empty.schema.types == [pa.int32(), pa.string(), pa.date32(), pa.bool_()]
    assert result.outputs["done"] == TextOutput("1 row(s) for O'Brien")
    assert table(result.outputs["odd_types"]).to_pylist() == [
        {"doc": '{"a": 1}', "arr": [1, 2], "t": "x"},
        {"doc": '[1, "b"]', "arr": [3], "t": None},
    ]

    attack = "x'); DELETE FROM audit; --"
    pg_runner.run("workflows/audit", {"who": attack})
    assert audit_rows(pg_conninfo) == [("O'Brien", "it's 100% done"), (attack, "it's 100% done")]


def test_replay_skips_a_finished_insert(pg_runner: Runner, pg_conninfo: dict[str, str]) -> None:
    first_journal = MemoryJournal()
    first = pg_runner.run("workflows/audit", journal=first_journal)
    assert len(audit_rows(pg_conninfo)) == 1
    assert "tasks.0" in first_journal.entries and "tasks.2.iter.2.tasks.0" in first_journal.entries

    # A resumed run whose step 0 had finished: the insert is replayed, not executed.
    pg_runner.events.clear()
    resumed = pg_runner.run(
        "workflows/audit", journal=MemoryJournal({"tasks.0": first_journal.entries["tasks.0"]})
    )
    assert len(audit_rows(pg_conninfo)) == 1
    assert table(resumed.outputs["record"]).equals(table(first.outputs["record"]))
    assert table(resumed.outputs["check"]).to_pylist() == [{"n": 1, "who": "O'Brien"}]
    by_step = {e["step"]: e["event"] for e in pg_runner.events if e["step"]}
    assert by_step["tasks.0"] == "step_replayed"
    assert by_step["tasks.1"] == "step_finished"

    # Without the checkpoint the same run inserts again: the journal made the difference.
    pg_runner.run("workflows/audit")
    assert len(audit_rows(pg_conninfo)) == 2

    # A fully journaled run executes nothing at all and gives the same outputs.
    pg_runner.events.clear()
    again = pg_runner.run("workflows/audit", journal=MemoryJournal(first_journal.entries))
    assert len(audit_rows(pg_conninfo)) == 2
    assert not [e for e in pg_runner.events if e["event"] == "step_started"]
    assert again.outputs == first.outputs


def test_replay_inside_a_loop_resumes_unfinished_iterations(
    pg_runner: Runner, pg_conninfo: dict[str, str]
) -> None:
    first = MemoryJournal()
    pg_runner.run("workflows/audit", journal=first)
    partial = {
        k: v
        for k, v in first.entries.items()
        if k in ("tasks.0", "tasks.1", "tasks.2.iter.0.tasks.0")
    }
    pg_runner.events.clear()
    pg_runner.run("workflows/audit", journal=MemoryJournal(partial))
    events = {e["step"]: e["event"] for e in pg_runner.events if e["step"]}
    assert events["tasks.2.iter.0.tasks.0"] == "step_replayed"
    assert events["tasks.2.iter.1.tasks.0"] == "step_finished"
    assert events["tasks.2"] == "step_finished"
    assert len(audit_rows(pg_conninfo)) == 1


def test_a_replayed_step_whose_sql_would_fail_is_not_executed(runner: Runner) -> None:
    with pytest.raises(SqlFailed):
        runner.run("workflows/broken", {"which": "sql"})
    checkpoint = StepResult(MapOutput({"bad_sql": TableOutput(pa.table({"x": [1, 2]}))}))
    journal = MemoryJournal()
    journal.put("tasks.1", checkpoint)
    result = runner.run("workflows/broken", {"which": "sql"}, journal=journal)
    assert result.outputs["choose"] == checkpoint.output


def test_postgres_errors_name_the_step(pg_runner: Runner, pg_conninfo: dict[str, str]) -> None:
    with psycopg.connect(**_kwargs(pg_conninfo), autocommit=True) as conn:
        conn.execute("DROP TABLE audit")
    with pytest.raises(SqlFailed, match=r'step tasks.0 \(record\): .*"audit" does not exist'):
        pg_runner.run("workflows/audit")
    pg_runner.secrets.pop("T_PGDB")
    with pytest.raises(SqlFailed, match="database_var names 'T_PGDB', which is not set"):
        pg_runner.run("workflows/audit")


def test_loop_concurrency_runs_iterations_at_once(pg_runner: Runner) -> None:
    result = pg_runner.run("workflows/slow")
    waits = result.outputs["waits"]
    assert isinstance(waits, ListOutput)
    assert [table(i["nap"]).column("v").to_pylist() for i in waits.items] == [[1], [2], [3]]
    inner = [e["event"] for e in pg_runner.events if e["step"].startswith("tasks.0.iter.")]
    # All three iterations started before any finished: they ran side by side.
    assert inner[:3] == ["step_started"] * 3 and inner[3:] == ["step_finished"] * 3


def test_a_stopped_run_resumes_where_it_stopped(
    pg_runner: Runner, pg_conninfo: dict[str, str]
) -> None:
    journal = MemoryJournal()
    pg_runner.events.clear()

    def stop_after_first_step() -> bool:
        # Watched all along the run (not only between steps): a condition, not a count.
        return "tasks.0" in journal.entries

    with pytest.raises(RunCancelled) as stopped:
        pg_runner.run("workflows/audit", journal=journal, should_stop=stop_after_first_step)
    assert stopped.value.step == "tasks.1" and stopped.value.code == "run_cancelled"
    assert list(journal.entries) == ["tasks.0"]
    assert pg_runner.events[-1]["event"] == "run_cancelled"
    assert not [e for e in pg_runner.events if e["event"] == "step_failed"]

    resumed = pg_runner.run("workflows/audit", journal=journal)
    assert len(audit_rows(pg_conninfo)) == 1
    assert table(resumed.outputs["check"]).to_pylist() == [{"n": 1, "who": "O'Brien"}]


def test_app_style_task_lists_see_their_names(pg_runner: Runner) -> None:
    from pydantic import TypeAdapter

    from quarry.definitions.models.tasks import Task

    tasks = TypeAdapter(list[Task]).validate_python(
        [
            {
                "name": "pick",
                "type": "execute_sql",
                "database": "warehouse",
                "sql_query": "SELECT {{ controls.region | param }} AS region",
            }
        ]
    )
    connections = Connections(pg_runner.source, pg_runner.cache, secrets=pg_runner.secrets.get)
    try:
        outputs = run_task_list(
            pg_runner.source, tasks, {"controls": {"region": "O'Brien"}}, connections=connections
        )
    finally:
        connections.close()
    assert table(outputs["pick"]).to_pylist() == [{"region": "O'Brien"}]
