"""Liveness, readiness and the effective topology."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from quarry import __version__
from quarry.api.deps import services
from quarry.fleet.guard import factory_imported
from quarry.runtime.queue.health import LOOPS
from quarry.store.db import ping

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(request: Request) -> dict[str, Any]:
    svc = services(request)
    return {
        "status": "ok",
        "version": __version__,
        "topology": svc.topology.describe(),
        "factory_imported": factory_imported(),
    }


@router.get("/readyz")
async def readyz(request: Request, response: Response) -> dict[str, Any]:
    svc = services(request)
    checks: dict[str, str] = {}

    def database() -> None:
        ping(svc.engine)

    for name, probe in (("database", database), ("object_store", svc.store.check)):
        try:
            await run_in_threadpool(probe)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"failed: {type(exc).__name__}"
    # In-process workers and the schedule driver, when this process runs them: one
    # that cannot recover from a database failure takes the process out (503).
    checks["work_loops"] = LOOPS.check(svc.settings.queue_unready_after_seconds)
    ready = all(v == "ok" for v in checks.values())
    body: dict[str, Any] = {"ready": ready, "checks": checks}
    proxy = getattr(request.app.state, "ide_proxy", None)
    if proxy is not None:
        # Reported, never fatal: a Factory outage must not take the serve fleet out of
        # the load balancer, since reads keep working without it.
        checks["upstream"] = await proxy.probe()
        body["degraded"] = [] if checks["upstream"] == "ok" else ["upstream"]
    response.status_code = 200 if ready else 503
    return body
