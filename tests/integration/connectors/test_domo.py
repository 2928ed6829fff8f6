"""``type: domo`` through httpx against a local server speaking Domo's query API
(``tests/support/domo_api.py``, executing with DuckDB): workflow steps, Arrow types,
the developer token from its variable, the guard, redaction, no bound values."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pyarrow as pa
import pytest

from quarry.runtime.connectors.settings import DOMO_BASE_URL_ENV
from quarry.runtime.engine import SqlFailed, TableOutput
from quarry.runtime.engine.results import Output
from tests.integration.connectors.conftest import FLEET_STRICT, ISOLATED, Workspace
from tests.support.domo_api import DomoApi

TOKEN = "domo-dev-token-9c1e"
DATASET = "b7a2f6c3-5e19-4d0e-8c47-6a8c1de3f234"

CONFIG = f"""\
databases:
  - name: domo
    type: domo
    instance: oxygen-ai
    dataset_id: {DATASET}
    developer_token_var: T_DOMO_TOKEN
models: []
"""

WORKFLOW = """\
variables:
  day:
    type: string
    default: "2026-01-02"
tasks:
  - name: rows
    type: execute_sql
    database: domo
    sql_query: SELECT * FROM table ORDER BY id
  - name: bound
    type: execute_sql
    database: domo
    sql_query: SELECT count(*) AS n FROM table WHERE day = {{ day | param }}
"""


@pytest.fixture
def domo(monkeypatch: pytest.MonkeyPatch) -> Iterator[DomoApi]:
    api = DomoApi(TOKEN, {DATASET})
    api.db.execute(
        f'CREATE TABLE "{DATASET}" (id BIGINT, "Calories (kcal)" DOUBLE, name VARCHAR,'
        " day DATE, seen TIMESTAMP);"
        f"""INSERT INTO "{DATASET}" VALUES (1, 12.5, 'apple', '2026-01-02',"""
        " '2026-01-02 03:04:05'), (2, NULL, NULL, NULL, NULL)"
    )
    monkeypatch.setenv(DOMO_BASE_URL_ENV, api.url)
    yield api
    api.close()


@pytest.fixture
def ws(make_workspace: Callable[..., Workspace], domo: DomoApi) -> Workspace:
    return make_workspace(CONFIG, {"domo": WORKFLOW}, {"T_DOMO_TOKEN": TOKEN})


def table(output: Output) -> pa.Table:
    assert isinstance(output, TableOutput)
    return output.table


@pytest.mark.parametrize("isolated", [False, True], ids=["inline", "connector-host"])
def test_a_step_queries_the_dataset_with_the_token(
    ws: Workspace, domo: DomoApi, isolated: bool
) -> None:
    with pytest.raises(SqlFailed, match="Domo's query API takes no bound parameters"):
        ws.run("workflows/domo", policy=ISOLATED if isolated else None)
    path, body, headers = domo.calls[0]
    assert path == f"/api/query/v1/execute/{DATASET}"
    assert body == {"sql": "SELECT * FROM table ORDER BY id"}
    assert headers["X-DOMO-Developer-Token"] == TOKEN
    assert len(domo.calls) == 1  # the statement with a bound value was never sent


def test_rows_come_back_typed(make_workspace: Callable[..., Workspace], domo: DomoApi) -> None:
    only_rows = WORKFLOW.split("  - name: bound")[0]
    ws = make_workspace(CONFIG, {"domo": only_rows}, {"T_DOMO_TOKEN": TOKEN})
    result = table(ws.run("workflows/domo").outputs["rows"])
    assert result.schema.types == [
        pa.int64(),
        pa.float64(),
        pa.string(),
        pa.date32(),
        pa.timestamp("us"),
    ]
    assert result.to_pylist() == [
        {
            "id": 1,
            "Calories (kcal)": 12.5,
            "name": "apple",
            "day": dt.date(2026, 1, 2),
            "seen": dt.datetime(2026, 1, 2, 3, 4, 5),
        },
        {"id": 2, "Calories (kcal)": None, "name": None, "day": None, "seen": None},
    ]


def test_fleet_mode_refuses_a_loopback_api(ws: Workspace, domo: DomoApi) -> None:
    with pytest.raises(SqlFailed, match="loopback or link-local address, refused in fleet mode"):
        ws.run("workflows/domo", policy=FLEET_STRICT)
    assert domo.calls == []


def test_a_refused_token_is_reported_without_it(ws: Workspace) -> None:
    ws.secrets["T_DOMO_TOKEN"] = "not-the-token-3b7"
    with pytest.raises(SqlFailed, match="Domo answered 401") as failed:
        ws.run("workflows/domo")
    assert "not-the-token-3b7" not in str(failed.value)


def test_an_instance_that_is_not_a_host_label_is_refused(
    make_workspace: Callable[..., Workspace],
) -> None:
    config = CONFIG.replace("instance: oxygen-ai", "instance: evil.example/x")
    ws = make_workspace(config, {"domo": WORKFLOW}, {"T_DOMO_TOKEN": TOKEN})
    with pytest.raises(SqlFailed, match="instance must be a Domo instance name"):
        ws.run("workflows/domo")
