"""Runs: create, read, list, follow (server-sent events), step outputs, cancel.

FleetOk: everything here reads or writes the database and the object store only,
so any replica answers for any run, wherever it executed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from quarry.api.deps import services, tenant_id
from quarry.api.fleet.cursors import decode_cursor, encode_cursor
from quarry.catalog.reader import Catalog
from quarry.catalog.task_sources import task_sources
from quarry.core.errors import BadRequest, NotFound
from quarry.core.logs import REQUEST_ID
from quarry.runtime.apps import resolve_controls
from quarry.runtime.apps.load import load_app
from quarry.runtime.runs.follow import RunEventHub
from quarry.runtime.runs.outputs import render_output
from quarry.runtime.runs.service import RunRequest, cancel_run, create_run, create_runs
from quarry.store import runs as runq
from quarry.store.runs import ArtifactRow, RunRow, StepRow
from quarry.store.workspaces import WorkspaceRow

router = APIRouter(tags=["runs"])
EXPORT_MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "sql": "text/plain; charset=utf-8",
    "txt": "text/plain; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}
MAX_BATCH_RUNS = 500


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["workflow", "app"] = "workflow"
    name: str = Field(min_length=1, max_length=500)
    variables: dict[str, Any] = Field(default_factory=dict)
    # An app's control values (``kind: app``); its variables are its controls, so
    # either key may carry them (not both).
    controls: dict[str, Any] | None = None
    revision: str | None = Field(None, pattern=r"^[0-9a-f]{8,64}$")
    # Shortens the operator's run deadline (QUARRY_RUN_DEADLINE_SECONDS) for this run.
    deadline_seconds: float | None = Field(None, gt=0)


def _step_json(step: StepRow) -> dict[str, Any]:
    return {
        "step_key": step.step_key,
        "name": step.name,
        "state": step.state,
        "attempt": step.attempt,
        "rows": step.rows,
        "error": step.error,
        "output_format": step.result_format,
        "started_at": step.started_at.isoformat() if step.started_at else None,
        "finished_at": step.finished_at.isoformat() if step.finished_at else None,
    }


def _run_json(run: RunRow, steps: list[StepRow] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": run.id,
        "state": run.state,
        "kind": run.target_kind,
        "name": run.target_name,
        "revision_id": run.revision_id,
        "variables": run.variables,
        "origin": run.origin,
        "error": run.error,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }
    if steps is not None:
        body["steps"] = [_step_json(s) for s in steps]
    return body


@router.post("/api/v1/workspaces/{workspace}/runs", status_code=202)
async def create(request: Request, workspace: str, body: RunCreate) -> dict[str, Any]:
    svc = services(request)
    ws = await run_in_threadpool(svc.catalog.workspace, tenant_id(request), workspace)
    variables = _run_variables(body)
    if body.kind == "app":
        await run_in_threadpool(_check_controls, svc.catalog, ws, body, variables)
    run_request = RunRequest(
        target_kind=body.kind,
        target_name=body.name,
        variables=variables,
        revision=body.revision,
        request_id=REQUEST_ID.get(),
        deadline_seconds=body.deadline_seconds,
    )
    run = await run_in_threadpool(create_run, svc, ws, run_request)
    return _run_json(run)


class RunBatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runs: list[RunCreate] = Field(min_length=1, max_length=MAX_BATCH_RUNS)


@router.post("/api/v1/workspaces/{workspace}/runs:batch", status_code=202)
async def create_batch(request: Request, workspace: str, body: RunBatchCreate) -> dict[str, Any]:
    """Many runs in one transaction (all or none): one bulk enqueue, one insert."""
    svc = services(request)
    ws = await run_in_threadpool(svc.catalog.workspace, tenant_id(request), workspace)
    run_requests = []
    for item in body.runs:
        variables = _run_variables(item)
        if item.kind == "app":
            await run_in_threadpool(_check_controls, svc.catalog, ws, item, variables)
        run_requests.append(
            RunRequest(
                target_kind=item.kind,
                target_name=item.name,
                variables=variables,
                revision=item.revision,
                request_id=REQUEST_ID.get(),
                deadline_seconds=item.deadline_seconds,
            )
        )
    rows = await run_in_threadpool(create_runs, svc, ws, run_requests)
    return {"runs": [_run_json(run) for run in rows]}


def _run_variables(body: RunCreate) -> dict[str, Any]:
    if body.controls is None:
        return body.variables
    if body.kind != "app":
        raise BadRequest("only an app run takes controls", parameter="controls")
    if body.variables:
        raise BadRequest("give an app's values as controls or as variables, not both")
    return body.controls


def _check_controls(
    catalog: Catalog, ws: WorkspaceRow, body: RunCreate, given: dict[str, Any]
) -> None:
    """Refuse bad control values now (400), not in a failed run later."""
    revision_id = catalog.resolve(ws, body.revision)
    resolve_controls(load_app(catalog, ws, revision_id, body.name), given)


@router.get("/api/v1/workspaces/{workspace}/runs")
async def list_runs(
    request: Request,
    workspace: str,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    svc = services(request)
    tenant = tenant_id(request)
    ws = await run_in_threadpool(svc.catalog.workspace, tenant, workspace)
    before = decode_cursor(cursor) if cursor else None

    def page() -> list[RunRow]:
        # History, polled: may lag by the read replica's replay lag (a client that
        # just created a run reads it by id, on the primary).
        with svc.replica_read() as conn:
            return runq.list_runs(conn, tenant, ws.id, limit=limit, before=before)

    rows = await run_in_threadpool(page)
    return {
        "runs": [_run_json(r) for r in rows],
        "next_cursor": encode_cursor(rows[-1].created_at, rows[-1].id)
        if len(rows) == limit
        else None,
    }


@router.get("/api/v1/runs/{run_id}")
async def get_run(request: Request, run_id: str) -> dict[str, Any]:
    svc = services(request)
    tenant = tenant_id(request)

    def load() -> dict[str, Any]:
        with svc.engine.connect() as conn:
            run = runq.get_run(conn, tenant, run_id)
            steps = runq.get_steps(conn, run_id)
        body = _run_json(run, steps)
        if any(s.error for s in steps):  # a failed step names where its task is written
            spaces = svc.catalog.list_workspaces(tenant)
            ws = next((w for w in spaces if w.id == run.workspace_id), None)
            found = None
            if ws is not None:
                found = task_sources(
                    svc.engine, svc.catalog, ws, run.revision_id, run.target_kind, run.target_name
                )
            for step in body["steps"]:
                if step["error"] and found is not None:
                    step["source"] = found.of(step["step_key"])
        return body

    return await run_in_threadpool(load)


@router.post("/api/v1/runs/{run_id}/cancel")
async def cancel(request: Request, run_id: str) -> dict[str, Any]:
    svc = services(request)
    run = await run_in_threadpool(cancel_run, svc.engine, svc.queue, tenant_id(request), run_id)
    return _run_json(run)


@router.get("/api/v1/runs/{run_id}/steps/{step_key}/output")
async def step_output(
    request: Request,
    run_id: str,
    step_key: str,
    format: Annotated[Literal["json", "csv", "parquet"], Query()] = "json",
) -> Response:
    svc = services(request)
    tenant = tenant_id(request)

    def load() -> tuple[bytes, str]:
        with svc.engine.connect() as conn:
            runq.get_run(conn, tenant, run_id)
            step = runq.get_step(conn, run_id, step_key)
        if step is None or step.result_key is None or step.result_format is None:
            raise NotFound(f"step {step_key!r} of run {run_id} has no output", step=step_key)
        return render_output(svc.store.get(step.result_key), step.result_format, format)

    data, media = await run_in_threadpool(load)
    return Response(data, media_type=media)


@router.get("/api/v1/runs/{run_id}/artifacts")
async def list_artifacts(request: Request, run_id: str) -> dict[str, Any]:
    """Exports (and, for apps, data) a run wrote to the object store."""
    svc = services(request)
    tenant = tenant_id(request)

    def load() -> list[ArtifactRow]:
        with svc.engine.connect() as conn:
            runq.get_run(conn, tenant, run_id)
            return runq.list_artifacts(conn, run_id)

    rows = await run_in_threadpool(load)
    return {
        "artifacts": [
            {
                "id": a.id,
                "kind": a.kind,
                "name": a.name,
                "format": a.format,
                "size": a.size,
                "step_key": a.step_key,
                "created_at": a.created_at.isoformat(),
                "url": f"/api/v1/runs/{run_id}/artifacts/{a.id}",
            }
            for a in rows
        ]
    }


@router.get("/api/v1/runs/{run_id}/artifacts/{artifact_id}")
async def download_artifact(request: Request, run_id: str, artifact_id: str) -> Response:
    svc = services(request)
    tenant = tenant_id(request)

    def load() -> tuple[ArtifactRow, bytes]:
        with svc.engine.connect() as conn:
            runq.get_run(conn, tenant, run_id)
            found = [a for a in runq.list_artifacts(conn, run_id) if a.id == artifact_id]
        if not found:
            raise NotFound(f"artifact {artifact_id!r} not found in run {run_id}")
        return found[0], svc.store.get(found[0].object_key)

    artifact, data = await run_in_threadpool(load)
    filename = artifact.name.rsplit("/", 1)[-1].replace('"', "")
    media = EXPORT_MEDIA.get(artifact.format, "application/octet-stream")
    return Response(
        data,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/api/v1/runs/{run_id}/events")
async def follow(
    request: Request,
    run_id: str,
    last_event_id: Annotated[int, Header(ge=0)] = 0,
) -> StreamingResponse:
    """Server-sent events until the run finishes; resumes after ``Last-Event-ID``."""
    svc = services(request)
    tenant = tenant_id(request)

    def poll(after: int) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
        with svc.engine.connect() as conn:
            run = runq.get_run(conn, tenant, run_id)
            return runq.events_after(conn, run_id, after), run.finished

    await run_in_threadpool(poll, 0)
    hub: RunEventHub = request.app.state.run_events

    async def stream() -> AsyncIterator[bytes]:
        after = last_event_id
        async with hub.subscribe(run_id) as woken:
            while True:
                woken.clear()  # before reading: a push during the read wakes us again
                events, finished = await run_in_threadpool(poll, after)
                for event_id, event in events:
                    after = event_id
                    name = str(event.get("type", "message"))
                    yield f"id: {event_id}\nevent: {name}\ndata: {json.dumps(event)}\n\n".encode()
                if finished and not events:
                    yield b"event: end\ndata: {}\n\n"
                    return
                if not events:
                    if await request.is_disconnected():
                        return
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), hub.wait_seconds())

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
