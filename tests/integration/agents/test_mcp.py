"""The MCP server at /mcp/ through the real MCP client of the same SDK, over a real
socket, tokens required (Postgres, two tenants, the in-process worker): tools listed,
the catalog and a semantic query read by a viewer, an agent asked and a workflow run
by an editor (the agent's model is the scripted server), a viewer refused writes,
another tenant's workspace not found, no token no session."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from quarry.factory.local import compile_local
from tests.support.model_server import ModelServer, text_reply, tool_reply
from tests.support.tenancy import (
    ACME,
    ACME_WS,
    GLOBEX_WS,
    WORKFLOW,
    Deployment,
    postgres_settings,
    two_tenants,
)


@pytest.fixture
def deployment(
    pg_database: str, tmp_path: Path, server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployment]:
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-test")
    settings = postgres_settings(
        pg_database, (tmp_path / "blobs").as_uri(), tmp_path, inprocess_workers="on"
    )
    with two_tenants(settings, tmp_path) as dep:
        root = dep.roots[ACME]
        config = yaml.safe_load((root / "config.yml").read_text())
        config["models"] = [
            {
                "name": "openai-4o-mini",
                "vendor": "openai",
                "model_ref": "gpt-4o-mini",
                "key_var": "TEST_OPENAI_KEY",
                "api_url": server.openai_url,
            }
        ]
        (root / "config.yml").write_text(yaml.safe_dump(config))
        compile_local(dep.svc.engine, dep.svc.store, ACME, root, ACME_WS)
        dep.svc.catalog.workspace(ACME, ACME_WS, fresh=True)
        yield dep


def _call(dep: Deployment, who: str | None, tool: str | None, arguments: dict[str, Any]) -> Any:
    """Connect as ``who`` (a token of the deployment, or none), call ``tool`` (or list
    the tools and read the catalog resource); the result, or the error."""

    async def go() -> Any:
        headers = {} if who is None else {"Authorization": f"Bearer {dep.tokens[who]}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=120) as http,
            Client(streamable_http_client(f"{dep.url}/mcp/", http_client=http)) as client,
        ):
            if tool is None:
                tools = await client.list_tools()
                catalog = await client.read_resource(f"quarry://workspaces/{ACME_WS}/catalog")
                return [t.name for t in tools.tools], catalog
            result = await client.call_tool(tool, arguments)
            text = "".join(getattr(c, "text", "") for c in result.content)
            return ("error" if result.is_error else "ok"), text

    return asyncio.run(asyncio.wait_for(go(), 180))


def test_mcp_tools_act_as_the_caller(deployment: Deployment, server: ModelServer) -> None:
    dep = deployment
    names, catalog = _call(dep, "acme:viewer", None, {})
    assert set(names) == {
        "list_workspaces",
        "list_definitions",
        "semantic_catalog",
        "semantic_query",
        "ask_agent",
        "run_workflow",
    }
    document = json.loads(catalog.contents[0].text)
    assert [t["name"] for t in document["topics"]] == ["sales"]

    assert _call(dep, "acme:viewer", "list_workspaces", {}) == ("ok", json.dumps([ACME_WS]))
    query = {"topic": "sales", "measures": ["orders.order_count"], "dimensions": ["orders.region"]}
    status, rows = _call(
        dep, "acme:viewer", "semantic_query", {"workspace": ACME_WS, "query": query}
    )
    assert status == "ok", rows
    table, sql = rows.split("\n\nSQL:\n")
    assert "region" in table.splitlines()[0] and len(table.splitlines()) == 5
    assert "GROUP BY" in sql.upper()

    # a viewer may not write; another tenant does not see acme's workspace
    refused = _call(
        dep, "acme:viewer", "run_workflow", {"workspace": ACME_WS, "workflow": WORKFLOW}
    )
    assert refused[0] == "error" and "editor role" in refused[1]
    other = _call(dep, "globex:admin", "semantic_catalog", {"workspace": ACME_WS})
    assert other[0] == "error" and "not found" in other[1]
    assert _call(dep, "globex:admin", "list_workspaces", {}) == ("ok", json.dumps([GLOBEX_WS]))

    ran = _call(dep, "acme:editor", "run_workflow", {"workspace": ACME_WS, "workflow": WORKFLOW})
    assert ran[0] == "ok", ran
    assert json.loads(ran[1])["state"] == "succeeded"

    sql = "SELECT count(DISTINCT region) AS regions FROM 'orders.csv'"
    server.add(
        tool_reply("execute_sql", match="How many regions", sql=sql),
        text_reply("There are 4 regions.", match="[1 rows]"),
    )
    asked = _call(
        dep,
        "acme:editor",
        "ask_agent",
        {"workspace": ACME_WS, "agent": "agents/analyst", "question": "How many regions?"},
    )
    assert asked[0] == "ok", asked
    body = json.loads(asked[1])
    assert body["status"] == "answered" and body["answer"] == "There are 4 regions."
    assert body["sql"] == [sql]


def test_mcp_without_a_token_is_401(deployment: Deployment) -> None:
    got = httpx2.post(
        f"{deployment.url}/mcp/",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Accept": "application/json, text/event-stream"},
    )
    assert got.status_code == 401 and got.headers["www-authenticate"].startswith("Bearer")
    assert ACME not in got.text
