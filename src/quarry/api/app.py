"""The ASGI application, assembled from routers according to the topology.

The serve role gets FleetOk routers only; ``ide`` and ``all`` add the IdeOnly ones.
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
from quarry.api.fleet import apps, compile_status, health, metrics, runs, threads, workspaces
from quarry.api.fleet import schedules as fleet_schedules
from quarry.api.fleet import semantic as fleet_semantic
from quarry.api.fleet.keepalive import ScaleToZero, ScaleToZeroMiddleware
from quarry.api.fleet.keepalive import router as keepalive_router
from quarry.api.limits import RequestLimits, RequestLimitsMiddleware
from quarry.api.request_id import RequestIdMiddleware
from quarry.api.services import Services, build_run_worker
from quarry.fleet.admission import Admission, AdmissionMiddleware, Limits
from quarry.fleet.proxy import IdeRouting, ide_proxy
from quarry.runtime.runs.follow import RunEventHub
from quarry.runtime.runs.workers import BackgroundWorkers
from quarry.scheduling.node import SchedulingNode, build_scheduling_node
from quarry.web import apps as app_pages
from quarry.web import index
from quarry.web import pages as web_pages

log = logging.getLogger(__name__)


def _lifespan(svc: Services) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        workers: BackgroundWorkers | None = None
        proxy = getattr(app.state, "ide_proxy", None)
        if proxy is not None:
            await proxy.start()  # the shared connection pool to the Factory
        if svc.topology.inprocess_workers:
            worker = build_run_worker(svc)
            workers = BackgroundWorkers([worker])
            await run_in_threadpool(workers.start)
        driver: SchedulingNode | None = None
        if svc.topology.global_driver:
            driver = build_scheduling_node(svc.engine, svc.queue, svc.catalog, svc.settings)
            await run_in_threadpool(driver.start)
        scale: ScaleToZero = app.state.scale_to_zero
        scale.start(workers.workers if workers is not None else [])
        factory = getattr(app.state, "factory", None)  # ide/all only (quarry.api.ide.mount)
        if factory is not None:
            await run_in_threadpool(factory.start)  # clone what is missing, compile
        try:
            yield
        finally:
            if factory is not None:
                await run_in_threadpool(factory.stop)
            await run_in_threadpool(scale.stop)
            if driver is not None:
                await run_in_threadpool(driver.stop)
            if workers is not None:
                await run_in_threadpool(workers.stop)
            if proxy is not None:
                await proxy.close()
            await app.state.run_events.close()
            semantic = getattr(app.state, "semantic", None)  # made on first query
            if semantic is not None:
                await run_in_threadpool(semantic.close)

    return lifespan


def create_app(svc: Services) -> FastAPI:
    app = FastAPI(
        lifespan=_lifespan(svc),
        title="Quarry",
        version=__version__,
        description="Compiled workspaces, runs and fleet operations.",
    )
    app.state.services = svc
    # One LISTEN connection (or local commit hook) wakes every run event stream.
    app.state.run_events = RunEventHub(
        svc.engine, poll_seconds=svc.settings.run_events_poll_seconds
    )
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
    app.include_router(app_pages.router)
    app.include_router(web_pages.router)  # sign-in, runs, schedules, explore
    app_pages.mount_static(app)
    if svc.topology.serves_ide_routes:
        # Imported only here: a serve replica must never load the Factory package.
        from quarry.api.ide import compile as ide_compile
        from quarry.api.ide import mount as ide_mount

        app.include_router(ide_compile.router)
        ide_mount.install(app, svc)  # files, git, draft runs; app.state.factory
    if svc.topology.proxies_ide_routes:
        # classify() decides; IdeOnly requests stream to the Factory (quarry.fleet.proxy).
        proxy = ide_proxy(svc.settings)
        app.state.ide_proxy = proxy
        app.add_middleware(IdeRouting, proxy=proxy)
    app.include_router(metrics.router)
    # Middleware, innermost first: fast path < admission < authentication < request id.
    app.add_middleware(DefinitionFastPath, catalog=svc.catalog, tenant_of=scope_tenant)
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
    app.state.scale_to_zero = ScaleToZero(svc)
    app.add_middleware(ScaleToZeroMiddleware, scale=app.state.scale_to_zero)
    if authenticator.open:
        log.warning(
            "running OPEN (auth=%s): every request is served as an admin of tenant %r "
            "without authentication; do not expose this port (QUARRY_AUTH=tokens to close)",
            settings.auth,
            settings.tenant,
        )
    return app
