"""The ASGI application: routers and middleware for a node, according to its topology.

The serve role gets FleetOk routers only; ``ide`` and ``all`` add the IdeOnly ones.
What runs beside the routes (workers, driver, Factory, proxy pool...) is the node's
(``quarry.node``): the lifespan only starts and stops it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from quarry import __version__
from quarry.api.auth import Authenticator, AuthMiddleware, decide_open
from quarry.api.browser import BrowserErrorPages, install_offline_docs
from quarry.api.errors import install_error_handlers
from quarry.api.fastpath import DefinitionFastPath, scope_tenant
from quarry.api.fleet import (
    agent_tests,
    apps,
    compile_status,
    health,
    mcp_mount,
    metrics,
    runs,
    threads,
    workspaces,
)
from quarry.api.fleet import schedules as fleet_schedules
from quarry.api.fleet import semantic as fleet_semantic
from quarry.api.fleet.keepalive import ScaleToZeroMiddleware
from quarry.api.fleet.keepalive import router as keepalive_router
from quarry.api.limits import RequestLimits, RequestLimitsMiddleware
from quarry.api.request_id import RequestIdMiddleware
from quarry.fleet.admission import Admission, AdmissionMiddleware, Limits
from quarry.fleet.proxy import IdeRouting
from quarry.node.node import Node
from quarry.node.roles import Process, build_node
from quarry.runtime.services import Services
from quarry.web import apps as app_pages
from quarry.web import index
from quarry.web import pages as web_pages

log = logging.getLogger(__name__)


def _lifespan(node: Node) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start the node with the server and stop it with the server (``quarry.node.node``
    lists what runs and in which order)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await node.start()
        try:
            yield
        finally:
            try:
                await node.stop()
            finally:
                semantic = getattr(app.state, "semantic", None)  # made on first query
                if semantic is not None:
                    await run_in_threadpool(semantic.close)

    return lifespan


def create_app(node: Node | Services) -> FastAPI:
    """The application for a node (``quarry.node.roles.build_node``); given bare
    services, the server node of their topology is built here."""
    if isinstance(node, Services):
        node = build_node(node, Process.SERVER)
    if node.run_events is None or node.scale_to_zero is None:
        raise ValueError("create_app needs a server node: build_node(svc, Process.SERVER)")
    svc = node.services
    app = FastAPI(
        lifespan=_lifespan(node),
        title="Quarry",
        version=__version__,
        description="Compiled workspaces, runs and fleet operations.",
    )
    # One typed node (``quarry.api.deps.node``); the other names are its parts, kept
    # for the routes and tests that read them.
    app.state.node = node
    app.state.run_events = node.run_events
    app.state.scale_to_zero = node.scale_to_zero
    install_error_handlers(app)
    install_offline_docs(app)  # /docs from vendored Swagger UI, not a CDN
    app.include_router(health.router)
    app.include_router(keepalive_router)
    app.include_router(workspaces.router)
    app.include_router(runs.router)
    app.include_router(fleet_schedules.router)
    app.include_router(compile_status.router)
    app.include_router(index.router)
    app.include_router(apps.router)
    app.include_router(fleet_semantic.router)
    app.include_router(threads.router)
    app.include_router(agent_tests.router)  # quarry test results by branch
    app.include_router(mcp_mount.router)  # /mcp/: the MCP server (docs/agents.md)
    app.include_router(app_pages.router)
    app.include_router(web_pages.router)  # sign-in, runs, schedules, explore
    app_pages.mount_static(app)
    if svc.topology.serves_ide_routes:
        # Imported only here: a serve replica must never load the Factory package.
        from quarry.api.ide import compile as ide_compile
        from quarry.api.ide import mount as ide_mount
        from quarry.factory.service import Factory
        from quarry.web import ide as ide_pages

        assert isinstance(node.factory, Factory), "an ide/all node runs the Factory"
        app.include_router(ide_compile.router)
        app.include_router(ide_pages.router)  # the IDE pages (IdeOnly)
        ide_mount.install(app, node.factory)  # files, git, draft runs; app.state.factory
    if node.ide_proxy is not None:
        # classify() decides; IdeOnly requests stream to the Factory (quarry.fleet.proxy).
        app.state.ide_proxy = node.ide_proxy
        app.add_middleware(IdeRouting, proxy=node.ide_proxy)
    app.include_router(metrics.router)
    # Middleware, innermost first: fast path < admission < authentication < request id.
    app.add_middleware(DefinitionFastPath, catalog=svc.catalog, tenant_of=scope_tenant)
    app.add_middleware(fleet_semantic.SemanticQueryFastPath)  # POST .../semantic/query
    settings = svc.settings
    admission = Admission(
        Limits(
            expensive=settings.admission_expensive_max,
            cheap=settings.admission_cheap_max,
            stream=settings.admission_stream_max,
            tenant_share=settings.admission_tenant_share,
            retry_after=settings.admission_retry_after,
        )
    )
    app.state.admission = admission
    app.add_middleware(
        AdmissionMiddleware,
        admission=admission,
        tenant_of=lambda scope: scope_tenant(scope) or "",
        enabled=settings.admission == "on",
    )
    authenticator = Authenticator(svc.engine, settings, open_mode=decide_open(settings, svc.engine))
    app.state.authenticator = authenticator
    app.add_middleware(AuthMiddleware, authenticator=authenticator)
    # Bodies, query strings and run variables over their caps: 413 before auth reads.
    app.add_middleware(RequestLimitsMiddleware, limits=RequestLimits.from_settings(settings))
    # Errors as pages for browsers; a crash is a 500 with the request id (inside it).
    app.add_middleware(BrowserErrorPages)
    app.add_middleware(RequestIdMiddleware)
    # Outermost: recovery on the first request; write requests end with a drain kick.
    app.add_middleware(ScaleToZeroMiddleware, scale=node.scale_to_zero)
    if authenticator.open:
        log.warning(
            "running OPEN (auth=%s): every request is served as an admin of tenant %r "
            "without authentication; do not expose this port (QUARRY_AUTH=tokens to close)",
            settings.auth,
            settings.tenant,
        )
    return app
