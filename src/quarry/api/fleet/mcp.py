"""The MCP server (Model Context Protocol, streamable HTTP) at ``/mcp/`` on every
replica: a workspace's agents, workflows, semantic layer and catalog as MCP tools and
a resource, for MCP clients (Claude Desktop, IDEs, other agents).

FleetOk, and scoped exactly as the HTTP API is: the request passes the same
authentication middleware (``Authorization: Bearer qk_...``), and every tool acts as
the caller — its tenant's workspaces only, its role (asking an agent and running a
workflow write, so they need an editor; reading needs a viewer). An agent question
is a thread turn and a workflow a run, both executed by workers; the tool waits for
the outcome. Built with the official ``mcp`` SDK (``MCPServer``), stateless: any
replica answers any request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

from fastapi import APIRouter, FastAPI
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.server.transport_security import TransportSecuritySettings
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from quarry import __version__
from quarry.agents.threads import Ceilings, create_thread, post_message, reply_status
from quarry.api.deps import AccessRole, Principal, principal, services
from quarry.api.fleet.semantic import principal_attributes, semantic_service
from quarry.core.errors import QuarryError
from quarry.definitions.kinds import Kind
from quarry.runtime.runs.follow import RunEventHub
from quarry.runtime.runs.service import RunRequest, create_run
from quarry.semantic import SemanticQuery
from quarry.store import runs as runq
from quarry.store import threads as tq

MAX_ROWS = 500
"""Rows a semantic query answers with at most (the cut is said)."""
WAIT_SECONDS = 600.0
"""How long a tool waits for a turn or a run before answering with its state."""


class ToolRefused(ToolError):
    """Said to the MCP client as the tool's error."""


_Tool = TypeVar("_Tool", bound=Callable[..., Awaitable[str]])


def _said(fn: _Tool) -> _Tool:
    """A Quarry error (not found, bad query, a ceiling...) reaches the client with its
    message, as the HTTP API says it; any other failure stays a generic error."""

    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> str:
        try:
            return await fn(*args, **kwargs)
        except QuarryError as exc:
            raise ToolRefused(exc.message) from None

    return cast(_Tool, call)


APP_KEY = "quarry.app"
"""Where the entry point keeps Quarry's application in the scope: inside the MCP
app, ``scope["app"]`` is the MCP app itself."""


def _request(ctx: Context[Any, Any]) -> Request:
    """The HTTP request of the call, as Quarry's application sees it (its state: the
    services, the caller authenticated by the middleware)."""
    request = ctx.request_context.request
    if not isinstance(request, Request) or APP_KEY not in request.scope:
        raise ToolRefused("this server answers over HTTP only")
    return Request({**request.scope, "app": request.scope[APP_KEY]})


def _caller(ctx: Context[Any, Any], role: AccessRole = AccessRole.VIEWER) -> Principal:
    who = principal(_request(ctx))
    if who.role < role:
        raise ToolRefused(f"this needs the {role.name.lower()} role")
    return who


async def _finished(request: Request, tenant: str, run_id: str) -> str:
    """Wait (pushed, not polled) until the run ends or ``WAIT_SECONDS`` pass."""
    svc = services(request)
    hub: RunEventHub = request.app.state.run_events

    def state() -> str:
        with svc.engine.connect() as conn:
            return runq.get_run(conn, tenant, run_id).state

    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    async with hub.subscribe(run_id) as woken:
        while True:
            woken.clear()
            current = await run_in_threadpool(state)
            if current in runq.TERMINAL or loop.time() >= deadline:
                return current
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), hub.wait_seconds())


def build_server() -> MCPServer:
    server = MCPServer(
        "quarry",
        version=__version__,
        instructions=(
            "Quarry workspaces: list them, read a workspace's semantic catalog, query its "
            "semantic layer, ask its agents, run its workflows."
        ),
    )

    @server.tool(description="The workspaces you may use.")
    @_said
    async def list_workspaces(ctx: Context[Any, Any]) -> str:
        who = _caller(ctx)
        svc = services(_request(ctx))
        rows = await run_in_threadpool(svc.catalog.list_workspaces, who.tenant_id)
        return json.dumps([row.name for row in rows])

    @server.tool(description="The agents and workflows of a workspace (names and file paths).")
    @_said
    async def list_definitions(workspace: str, ctx: Context[Any, Any]) -> str:
        who = _caller(ctx)
        svc = services(_request(ctx))

        def load() -> dict[str, Any]:
            ws = svc.catalog.workspace(who.tenant_id, workspace)
            revision = svc.catalog.resolve(ws, None)
            found: dict[str, Any] = {}
            for kind in (Kind.AGENT, Kind.WORKFLOW):
                document = svc.catalog.definitions(ws, revision, kind.value)
                found[f"{kind.value}s"] = json.loads(document.body).get("definitions", [])
            return found

        return json.dumps(await run_in_threadpool(load), default=str)

    @server.tool(description="The semantic catalog of a workspace: topics, views, members.")
    @_said
    async def semantic_catalog(workspace: str, ctx: Context[Any, Any]) -> str:
        return await _catalog(ctx, workspace)

    @server.resource(
        "quarry://workspaces/{workspace}/catalog",
        name="semantic catalog",
        mime_type="application/json",
    )
    async def catalog_resource(workspace: str, ctx: Context[Any, Any]) -> str:
        try:
            return await _catalog(ctx, workspace)
        except QuarryError as exc:
            raise ResourceError(exc.message) from None

    @server.tool(
        description="Query the semantic layer of a workspace: a JSON semantic query "
        '({"topic", "measures", "dimensions", "filters", "orders", "limit"}). Answers '
        f"CSV rows (at most {MAX_ROWS}) and the SQL that ran."
    )
    @_said
    async def semantic_query(workspace: str, query: dict[str, Any], ctx: Context[Any, Any]) -> str:
        who = _caller(ctx)
        request = _request(ctx)
        svc = services(request)
        sem = semantic_service(request)

        def answer() -> str:
            ws = svc.catalog.workspace(who.tenant_id, workspace)
            revision = svc.catalog.resolve(ws, None)
            parsed = SemanticQuery.from_request(query)
            result, _hit, _key = sem.answer(
                ws, revision, parsed, principal_attributes(who), max_rows=MAX_ROWS
            )
            table = result.table
            lines = [",".join(table.column_names)]
            lines += [",".join(_cell(v) for v in row.values()) for row in table.to_pylist()]
            cut = (table.schema.metadata or {}).get(b"quarry.truncated")
            note = f"\n[cut at {MAX_ROWS} rows]" if cut else ""
            return "\n".join(lines) + note + f"\n\nSQL:\n{result.sql}"

        return await run_in_threadpool(answer)

    @server.tool(
        description="Ask an agent of a workspace a question (a new thread, one turn, run by "
        "a worker); answers with the agent's answer and the SQL it ran."
    )
    @_said
    async def ask_agent(workspace: str, agent: str, question: str, ctx: Context[Any, Any]) -> str:
        who = _caller(ctx, AccessRole.EDITOR)
        request = _request(ctx)
        svc = services(request)
        ceilings = Ceilings(
            svc.settings.agent_max_concurrent_turns, svc.settings.agent_max_tokens_per_day
        )

        def ask() -> tuple[str, str]:
            ws = svc.catalog.workspace(who.tenant_id, workspace)
            thread = create_thread(svc.engine, svc.catalog, ws, agent, who.subject, None)
            turn = post_message(
                svc.engine, svc.queue, svc.catalog, ws, thread, question, ceilings=ceilings
            )
            return thread.id, turn.run.id

        thread_id, run_id = await run_in_threadpool(ask)
        await _finished(request, who.tenant_id, run_id)

        def reply() -> dict[str, Any]:
            with svc.engine.connect() as conn:
                message = tq.get_reply_of_run(conn, run_id)
            status = reply_status(message)
            body: dict[str, Any] = {"thread_id": thread_id, "status": status}
            if status in ("answered", "max_iterations"):
                body["answer"] = message.content
                body["sql"] = [t["sql"] for t in message.parts.get("tools", []) if "sql" in t]
            else:
                body["error"] = message.run_error
            return body

        return json.dumps(await run_in_threadpool(reply))

    @server.tool(
        description="Run a workflow of a workspace with variables and wait for it to end; "
        "answers with the run's state and its steps."
    )
    @_said
    async def run_workflow(
        workspace: str,
        workflow: str,
        ctx: Context[Any, Any],
        variables: dict[str, Any] | None = None,
    ) -> str:
        who = _caller(ctx, AccessRole.EDITOR)
        request = _request(ctx)
        svc = services(request)

        def start() -> str:
            ws = svc.catalog.workspace(who.tenant_id, workspace)
            run = create_run(
                svc,
                ws,
                RunRequest("workflow", workflow, variables or {}, origin="mcp"),
            )
            return run.id

        run_id = await run_in_threadpool(start)
        state = await _finished(request, who.tenant_id, run_id)

        def outcome() -> dict[str, Any]:
            with svc.engine.connect() as conn:
                run = runq.get_run(conn, who.tenant_id, run_id)
                steps = runq.get_steps(conn, run_id)
            return {
                "run_id": run_id,
                "state": state,
                "error": run.error,
                "steps": [
                    {"step": s.step_key, "name": s.name, "state": s.state, "rows": s.rows}
                    for s in steps
                ],
            }

        return json.dumps(await run_in_threadpool(outcome), default=str)

    return server


async def _catalog(ctx: Context[Any, Any], workspace: str) -> str:
    who = _caller(ctx)
    request = _request(ctx)
    svc = services(request)
    sem = semantic_service(request)

    def load() -> str:
        ws = svc.catalog.workspace(who.tenant_id, workspace)
        revision = svc.catalog.resolve(ws, None)
        document = sem.models.catalog_document(ws, revision)
        return document.body.decode()

    return await run_in_threadpool(load)


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    if any(ch in text for ch in ',\n"'):
        text = '"' + text.replace('"', '""') + '"'
    return text


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One MCP server per application, its session manager running while it serves."""
    server = build_server()
    app.state.mcp_app = server.streamable_http_app(
        streamable_http_path="/",
        stateless_http=True,
        json_response=True,
        # Replicas sit behind load balancers under any host name; the request was
        # authenticated by its token before it got here.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    async with server.session_manager.run():
        yield


async def _mcp(scope: Scope, receive: Receive, send: Send) -> None:
    app = scope["app"]
    scope[APP_KEY] = app
    await app.state.mcp_app(scope, receive, send)


router = APIRouter(lifespan=_lifespan)
router.mount("/mcp", _mcp)
