"""Schedules, monitors and alerts: list with next/last fire times, pause, resume,
trigger now, fire log, alert state and history.

FleetOk: everything here is the database (pause is operator state stored there,
never an edit of the definitions), so any replica answers. Every query is scoped to
the caller's tenant and the named workspace. Names contain slashes
(``schedules/nightly``), hence the ``:path`` parameters, and the action routes are
registered before the plain read so ``.../nightly/pause`` is not read as a name.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from quarry.api.deps import services, tenant_id
from quarry.scheduling import admin

router = APIRouter(tags=["schedules"])
BASE = "/api/v1/workspaces/{workspace}"
KindQuery = Annotated[Literal["schedule", "monitor"], Query()]


async def _workspace_id(request: Request, workspace: str) -> tuple[str, str]:
    svc = services(request)
    tenant = tenant_id(request)
    ws = await run_in_threadpool(svc.catalog.workspace, tenant, workspace)
    return tenant, ws.id


@router.get(f"{BASE}/schedules")
async def list_schedules(
    request: Request, workspace: str, kind: Literal["schedule", "monitor"] | None = None
) -> dict[str, Any]:
    svc = services(request)
    tenant, ws = await _workspace_id(request, workspace)

    def load() -> list[dict[str, Any]]:
        with svc.engine.connect() as conn:
            return [v.to_json() for v in admin.list_schedules(conn, tenant, ws, kind)]

    return {"schedules": await run_in_threadpool(load)}


async def _pause(request: Request, workspace: str, name: str, kind: str, paused: bool) -> Any:
    svc = services(request)
    tenant, ws = await _workspace_id(request, workspace)
    view = await run_in_threadpool(
        lambda: admin.set_paused(svc.engine, tenant, ws, name, paused, kind=kind)
    )
    return view.to_json()


@router.post(f"{BASE}/schedules/{{name:path}}/pause")
async def pause(
    request: Request, workspace: str, name: str, kind: KindQuery = "schedule"
) -> dict[str, Any]:
    result: dict[str, Any] = await _pause(request, workspace, name, kind, True)
    return result


@router.post(f"{BASE}/schedules/{{name:path}}/resume")
async def resume(
    request: Request, workspace: str, name: str, kind: KindQuery = "schedule"
) -> dict[str, Any]:
    result: dict[str, Any] = await _pause(request, workspace, name, kind, False)
    return result


@router.post(f"{BASE}/schedules/{{name:path}}/trigger", status_code=202)
async def trigger(
    request: Request, workspace: str, name: str, kind: KindQuery = "schedule"
) -> dict[str, Any]:
    svc = services(request)
    tenant, ws = await _workspace_id(request, workspace)
    fire = await run_in_threadpool(lambda: admin.trigger(svc, tenant, ws, name, kind=kind))
    return {
        "name": fire.name,
        "scheduled_for": fire.scheduled_for.isoformat(),
        "outcome": fire.outcome,
        "run_id": fire.run_id,
        "task_id": fire.task_id,
    }


@router.get(f"{BASE}/schedules/{{name:path}}/fires")
async def fires(
    request: Request,
    workspace: str,
    name: str,
    kind: KindQuery = "schedule",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    svc = services(request)
    tenant, ws = await _workspace_id(request, workspace)

    def load() -> list[dict[str, Any]]:
        with svc.engine.connect() as conn:
            return admin.list_fires(conn, tenant, ws, name, kind=kind, limit=limit)

    return {"fires": await run_in_threadpool(load)}


@router.get(f"{BASE}/schedules/{{name:path}}")
async def get_schedule(
    request: Request, workspace: str, name: str, kind: KindQuery = "schedule"
) -> dict[str, Any]:
    svc = services(request)
    tenant, ws = await _workspace_id(request, workspace)

    def load() -> dict[str, Any]:
        with svc.engine.connect() as conn:
            return admin.get_schedule(conn, tenant, ws, name, kind).to_json()

    return await run_in_threadpool(load)


@router.get(f"{BASE}/alerts")
async def list_alerts(request: Request, workspace: str) -> dict[str, Any]:
    svc = services(request)
    tenant, ws = await _workspace_id(request, workspace)

    def load() -> list[dict[str, Any]]:
        with svc.engine.connect() as conn:
            return admin.list_alerts(conn, tenant, ws)

    return {"alerts": await run_in_threadpool(load)}


@router.get(f"{BASE}/alerts/{{monitor:path}}/history")
async def alert_history(
    request: Request,
    workspace: str,
    monitor: str,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    svc = services(request)
    tenant, ws = await _workspace_id(request, workspace)

    def load() -> list[dict[str, Any]]:
        with svc.engine.connect() as conn:
            return admin.alert_history(conn, tenant, ws, monitor, limit=limit)

    return {"monitor": monitor, "events": await run_in_threadpool(load)}
