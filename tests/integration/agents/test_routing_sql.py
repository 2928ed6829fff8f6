"""Routing over ``.sql`` files, as Oxy: a route that is an SQL file is an
``execute_sql`` tool with the file's SQL fixed, on the database its ``oxy:`` header
names. Through the OpenAI SDK against the scripted model server, on the demo's
DuckDB."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from quarry.core.errors import CompileFailed
from quarry.factory.local import compile_local
from quarry.node.services import Services
from tests.integration.agents.conftest import Workspace
from tests.support.model_server import ModelServer, text_reply, tool_reply

REGIONS = """/*
oxy:
  database: local
  embed: |
    orders per region of the shop
*/
SELECT region, count(*) AS orders FROM 'orders.csv' GROUP BY region ORDER BY region
"""

NO_DATABASE = """/*
oxy:
  embed: number of orders
*/
SELECT count(*) AS orders FROM 'orders.csv'
"""

UNKNOWN_DATABASE = """/*
oxy:
  database: warehouse
*/
SELECT 1 AS one
"""


def _router(routes: list[str], **extra: Any) -> str:
    return yaml.safe_dump(
        {"type": "routing", "model": "gpt", "description": "Routes.", "routes": routes, **extra}
    )


def _files() -> dict[str, str]:
    return {
        "queries/regions.sql": REGIONS,
        "queries/no_database.sql": NO_DATABASE,
        "queries/unknown_database.sql": UNKNOWN_DATABASE,
    }


def test_the_sql_route_runs_the_files_query_whatever_the_model_asks(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    ws = make_workspace({"router": _router(["queries/*.sql"])}, files=_files())
    # the model tries to change the query: the tool takes no arguments and ignores it
    server.add(
        tool_reply("queries_regions", match="orders per region", sql="DROP TABLE orders"),
        text_reply("North leads.", match="[4 rows]"),
    )
    events: list[dict[str, Any]] = []
    result = ws.ask("agents/router", "How many orders per region?", events)
    assert result.answer == "North leads." and result.status == "answered"
    tools = {t["function"]["name"]: t["function"] for t in server.requests[0].body["tools"]}
    # only the file whose header names a known database is offered; the others are said
    assert list(tools) == ["queries_regions"]
    assert tools["queries_regions"]["description"] == REGIONS
    assert tools["queries_regions"]["parameters"]["properties"] == {}
    warnings = [e["message"] for e in events if e["type"] == "warning"]
    assert any("queries/no_database.sql" in w and "names no database" in w for w in warnings)
    assert any("'warehouse' is not in config.yml" in w for w in warnings)
    assert all(w.startswith("routes left out") for w in warnings if "queries/" in w)
    # the model read the file's rows: four regions with their counts
    result_text = server.requests[1].last
    assert result_text.splitlines()[0] == "region,orders"
    assert result_text.endswith("[4 rows]")
    regions = [line.split(",")[0] for line in result_text.splitlines()[1:5]]
    assert regions == sorted(regions) and len(regions) == 4
    calls = [e for e in events if e["type"] == "tool_call"]
    assert len(calls) == 1


def test_without_synthesis_the_rows_are_the_answer(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    ws = make_workspace(
        {"router": _router(["queries/regions.sql"], synthesize_results=False)}, files=_files()
    )
    server.add(tool_reply("queries_regions", match="per region"))
    result = ws.ask("agents/router", "orders per region?")
    lines = result.answer.splitlines()
    assert lines[0] == "region,orders" and lines[-1] == "[4 rows]"
    total = sum(int(line.split(",")[1]) for line in lines[1:5])
    assert total > 0
    assert len(server.requests) == 1


def test_a_route_to_a_missing_sql_file_is_a_compile_problem(
    services: Services, tmp_path: Path
) -> None:
    from quarry.demo import create_demo_workspace

    root = create_demo_workspace(tmp_path / "shop")
    (root / "agents" / "router.agent.yml").write_text(
        _router(["queries/missing.sql"]).replace("gpt", "openai-4o-mini")
    )
    with pytest.raises(CompileFailed) as failed:
        compile_local(services.engine, services.store, "local", root, "shop")
    assert "file 'queries/missing.sql' does not exist" in str(failed.value)


def test_a_sql_route_without_a_usable_database_is_a_compile_warning(
    services: Services, tmp_path: Path
) -> None:
    from quarry.demo import create_demo_workspace

    root = create_demo_workspace(tmp_path / "shop")
    for path, text in {**_files(), "queries/no_header.sql": "SELECT 1\n"}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    (root / "agents" / "router.agent.yml").write_text(
        _router(["queries/*.sql"]).replace("gpt", "openai-4o-mini")
    )
    result = compile_local(services.engine, services.store, "local", root, "shop")
    warned = {p.path: p.message for p in result.problems if p.is_warning}
    assert "queries/regions.sql" not in warned
    assert "names no database" in warned["queries/no_database.sql"]
    assert "'warehouse' is not in config.yml" in warned["queries/unknown_database.sql"]
    assert "does not open with an oxy: header" in warned["queries/no_header.sql"]
    for message in (warned[p] for p in warned if p.startswith("queries/")):
        assert message.startswith("this SQL file is a route of agents/router.agent.yml")
        assert "not supported yet" not in message
