"""Stopping a step while it runs: cancel, step timeouts and the run's deadline, each
interrupting a real long DuckDB or Postgres statement through the API and an
in-process worker; one statement per ``execute_sql`` task; ``step`` in templates."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from quarry.api.app import create_app
from quarry.factory.local import compile_local
from quarry.node.services import build_services
from tests.conftest import Backend
from tests.support.processes import serve_in_thread, wait_until

WS = "/api/v1/workspaces/ws"
# About 10^10 rows of cross join: minutes of work, unless interrupted.
SPIN = "SELECT sum(a.range * b.range) AS s FROM range(100000) a, range(100000) b"
NAP = "SELECT pg_sleep(60) IS NOT NULL AS slept"
# Long enough that nothing but an interrupt ends these steps in the time allowed.
PROMPT = 10.0


def _task(name: str, database: str, sql: str, extra: str = "") -> str:
    return (
        f"  - name: {name}\n    type: execute_sql\n    database: {database}\n"
        f"    sql_query: {sql!r}\n{extra}"
    )


def _workflow(tasks: str, variables: str = "") -> str:
    return (variables and f"variables:\n{variables}") + f"tasks:\n{tasks}"


REGION = "  region: {type: string}\n"
WORKFLOWS = {
    "spin": _workflow(_task("spin", "local", SPIN)),
    "nap": _workflow(_task("nap", "wh", NAP)),
    "spin_capped": _workflow(_task("spin", "local", SPIN, "    timeout: 1\n")),
    "nap_capped": _workflow(_task("nap", "wh", NAP, "    timeout: 1.5\n")),
    "region": _workflow(
        _task(
            "by_region",
            "local",
            "SELECT count(*) AS n FROM 'orders.csv' WHERE region = '{{ region }}'",
        ),
        REGION,
    ),
    "region_pg": _workflow(_task("echo", "wh", "SELECT '{{ region }}' AS region"), REGION),
    "several": _workflow(
        _task(
            "both",
            "local",
            "CREATE TABLE t AS SELECT 41 AS x; SELECT x + 1 AS y FROM t",
            "    multiple_statements: true\n",
        )
        + _task(
            "both_pg",
            "wh",
            "CREATE TEMP TABLE t AS SELECT 41 AS x; SELECT x + 1 AS y FROM t",
            "    multiple_statements: true\n",
        )
    ),
    "keyed": _workflow(
        _task(
            "first",
            "local",
            "SELECT '{{ step.idempotency_key }}' AS k, {{ step.attempt }} AS attempt, "
            "'{{ step.key }}' AS step_key, '{{ step.run_id }}' AS run_id",
        )
    ),
}

Start = Callable[..., AbstractContextManager[httpx.Client]]


@pytest.fixture
def start(backend: Backend, empty_pg_database: str, tmp_path: Path) -> Start:
    """``with start(**settings) as client``: a compiled workspace served with an
    in-process worker whose heartbeat runs every half second."""
    warehouse = empty_pg_database.rsplit("/", 1)[1]
    root = tmp_path / "ws"
    (root / "workflows").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data" / "orders.csv").write_text("region,amount\nNorth,1\nSouth,2\n")
    (root / "config.yml").write_text(
        "databases:\n"
        "  - {name: local, type: duckdb, dataset: data/}\n"
        "  - name: wh\n    type: postgres\n    host: 127.0.0.1\n"
        f"    port: 5432\n    user: postgres\n    database: {warehouse}\nmodels: []\n"
    )
    for name, body in WORKFLOWS.items():
        (root / "workflows" / f"{name}.workflow.yml").write_text(body)

    @contextmanager
    def serve(**settings: Any) -> Iterator[httpx.Client]:
        values = {"revision_cache_ttl": 0, "worker_lease_seconds": 1.5, **settings}
        svc = build_services(backend.settings(data_dir=tmp_path / "data-dir", **values))
        try:
            result = compile_local(svc.engine, svc.store, "local", root, "ws")
            assert not result.problems, result.problems
            with (
                serve_in_thread(create_app(svc)) as url,
                httpx.Client(base_url=url, timeout=30) as client,
            ):
                yield client
        finally:
            svc.close()

    return serve


def _run(
    client: httpx.Client, name: str, *, deadline: float | None = None, **variables: Any
) -> str:
    body: dict[str, Any] = {"name": f"workflows/{name}", "variables": variables}
    if deadline is not None:
        body["deadline_seconds"] = deadline
    created = client.post(f"{WS}/runs", json=body)
    assert created.status_code == 202, created.text
    return str(created.json()["id"])


def _finished(client: httpx.Client, run_id: str, timeout: float) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def done() -> bool:
        found.update(client.get(f"/api/v1/runs/{run_id}").json())
        return found["state"] in {"succeeded", "failed", "cancelled"}

    wait_until(done, timeout, f"run {run_id} to finish")
    return found


def _step_running(client: httpx.Client, run_id: str) -> None:
    def running() -> bool:
        steps = client.get(f"/api/v1/runs/{run_id}").json()["steps"]
        return any(s["step_key"] == "tasks.0" and s["state"] == "running" for s in steps)

    wait_until(running, 30, "the step to start")


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _sleeping_backends(url: str) -> int:
    with psycopg.connect(_dsn(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state = 'active' AND query LIKE '%pg_sleep(60)%'"
            " AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_cancel_interrupts_a_long_duckdb_step(start: Start) -> None:
    with start() as client:
        run_id = _run(client, "spin")
        _step_running(client, run_id)
        asked = time.monotonic()
        assert client.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
        done = _finished(client, run_id, PROMPT)
        assert time.monotonic() - asked < PROMPT
        assert done["state"] == "cancelled", done
        assert [s["state"] for s in done["steps"]] != ["succeeded"]
        # The worker is free again: the next run executes.
        assert _finished(client, _run(client, "keyed"), 30)["state"] == "succeeded"


def test_cancel_interrupts_a_long_postgres_step(start: Start, empty_pg_database: str) -> None:
    with start() as client:
        run_id = _run(client, "nap")
        wait_until(lambda: _sleeping_backends(empty_pg_database) == 1, 30, "pg_sleep to run")
        asked = time.monotonic()
        assert client.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
        done = _finished(client, run_id, PROMPT)
        assert time.monotonic() - asked < PROMPT
        assert done["state"] == "cancelled", done
        # The server stopped the statement; it does not sleep on for nobody.
        assert _sleeping_backends(empty_pg_database) == 0


def test_a_step_over_its_timeout_is_interrupted_and_fails_naming_it(
    start: Start, empty_pg_database: str
) -> None:
    with start() as client:
        spin, nap = _run(client, "spin_capped"), _run(client, "nap_capped")
        for run_id, task, limit in ((spin, "spin", "1"), (nap, "nap", "1.5")):
            done = _finished(client, run_id, 30)
            assert done["state"] == "failed", done
            assert done["error"] == (
                f"step tasks.0 ({task}): the step ran longer than its timeout of {limit} s"
                " and was interrupted"
            )
            assert [s["state"] for s in done["steps"]] == ["failed"]
        assert _sleeping_backends(empty_pg_database) == 0


def test_the_operator_default_step_timeout(start: Start) -> None:
    with start(step_timeout_seconds=1) as client:
        began = time.monotonic()
        done = _finished(client, _run(client, "spin"), PROMPT)
        assert time.monotonic() - began < PROMPT
        assert done["state"] == "failed"
        assert "longer than its timeout of 1 s" in done["error"]


def test_the_run_deadline_interrupts_the_step_in_flight(start: Start) -> None:
    with start(run_deadline_seconds=2) as client:
        began = time.monotonic()
        # A request cannot lengthen the operator's deadline.
        done = _finished(client, _run(client, "nap", deadline=100), PROMPT)
        assert time.monotonic() - began < PROMPT
        assert done["state"] == "failed", done
        assert done["error"] == (
            "step tasks.0 (nap): the run passed its deadline (2 s); the step was interrupted"
        )


def test_a_run_request_may_shorten_the_deadline(start: Start) -> None:
    with start() as client:
        began = time.monotonic()
        done = _finished(client, _run(client, "spin", deadline=1.5), PROMPT)
        assert time.monotonic() - began < PROMPT
        assert done["state"] == "failed", done
        assert "the run passed its deadline (1.5 s)" in done["error"]
        invalid = client.post(f"{WS}/runs", json={"name": "workflows/spin", "deadline_seconds": 0})
        assert invalid.status_code == 400 and "deadline_seconds" in invalid.text, invalid.text


STACKED = "x'; COPY (SELECT 1) TO '{path}'; --"


def test_a_spliced_value_cannot_stack_a_second_statement(
    start: Start, tmp_path: Path, empty_pg_database: str
) -> None:
    target = tmp_path / "pwn.csv"
    with start() as client:
        done = _finished(client, _run(client, "region", region=STACKED.format(path=target)), 30)
        assert done["state"] == "failed", done
        assert done["error"].startswith(
            "step tasks.0 (by_region): the SQL holds 2 statements and an execute_sql task runs one"
        ), done["error"]
        assert "multiple_statements: true" in done["error"]
        assert not target.exists()

        stacked = "x'; CREATE TABLE pwned (x int); --"
        done = _finished(client, _run(client, "region_pg", region=stacked), 30)
        assert done["state"] == "failed", done
        assert done["error"].startswith("step tasks.0 (echo): the SQL holds 2 statements")
        with psycopg.connect(_dsn(empty_pg_database)) as conn:
            found = conn.execute("SELECT to_regclass('pwned') IS NOT NULL").fetchone()
        assert found == (False,)
        # An ordinary value still runs.
        fine = _finished(client, _run(client, "region", region="North"), 30)
        assert fine["state"] == "succeeded", fine


def test_a_task_may_opt_in_to_several_statements(start: Start) -> None:
    with start() as client:
        run_id = _run(client, "several")
        done = _finished(client, run_id, 30)
        assert done["state"] == "succeeded", done
        for step in ("tasks.0", "tasks.1"):
            out = client.get(f"/api/v1/runs/{run_id}/steps/{step}/output").json()
            assert out["rows"] == [{"y": 42}], out


def test_steps_see_their_idempotency_key(start: Start) -> None:
    with start() as client:
        run_id = _run(client, "keyed")
        assert _finished(client, run_id, 30)["state"] == "succeeded"
        out = client.get(f"/api/v1/runs/{run_id}/steps/tasks.0/output").json()
        assert out["rows"] == [
            {"k": f"{run_id}:tasks.0", "attempt": 1, "step_key": "tasks.0", "run_id": run_id}
        ]
