"""``/mcp/`` without the MCP SDK on the start-up path (issue #20).

Importing the official ``mcp`` SDK and building the server
(:mod:`quarry.api.fleet.mcp`) is about half a second of CPU, a third of what
``quarry serve`` spends before it answers. So the application's lifespan starts a
task that imports it in a thread and then runs the MCP server's session manager
(that task enters and leaves it, as the SDK's task group requires), while the
application already serves everything else. A request to ``/mcp/`` that arrives
before the server is up waits for it; if it could not be built, it is answered 503
and the error is in the log. What MCP clients see once it is up is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

log = logging.getLogger(__name__)

SERVER_MODULE = "quarry.api.fleet.mcp"
"""The module that builds the MCP server (imported in the background)."""

APP_KEY = "quarry.app"
"""Where Quarry's application is kept in the scope (``quarry.api.fleet.mcp.APP_KEY``,
the same key: inside the MCP app, ``scope["app"]`` is the MCP app itself)."""


class _McpServer:
    """The MCP server of one application: built in the background, then served."""

    def __init__(self) -> None:
        self.up = asyncio.Event()  # set once built (or once building failed)
        self.failed = False
        self.stop = asyncio.Event()

    async def run(self, app: FastAPI) -> None:
        async with contextlib.AsyncExitStack() as stack:
            try:
                module = await asyncio.to_thread(importlib.import_module, SERVER_MODULE)
                # builds the server, sets app.state.mcp_app, runs its session manager
                await stack.enter_async_context(module._lifespan(app))
            except Exception:
                log.exception("the MCP server could not start; /mcp/ answers 503")
                self.failed = True
                self.up.set()
                return
            self.up.set()
            await self.stop.wait()


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    server = _McpServer()
    app.state.mcp_server = server
    task = asyncio.create_task(server.run(app), name="mcp-server")
    try:
        yield
    finally:
        server.stop.set()
        await task


async def _mcp(scope: Scope, receive: Receive, send: Send) -> None:
    app = scope["app"]
    server: _McpServer = app.state.mcp_server
    await server.up.wait()
    if server.failed:
        answer = JSONResponse({"detail": "the MCP server is unavailable"}, status_code=503)
        await answer(scope, receive, send)
        return
    scope[APP_KEY] = app
    await app.state.mcp_app(scope, receive, send)


router = APIRouter(lifespan=_lifespan)
router.mount("/mcp", _mcp)
