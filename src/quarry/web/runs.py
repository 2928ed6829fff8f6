"""Runs: the list with filters, a form to start a workflow, and the run page — its
steps live over server-sent events (``static/run.js`` follows
``/api/v1/runs/{id}/events``), outputs and exports to download, retry and cancel.

Every read is scoped to the signed-in tenant (``runs.get_run`` filters by tenant, so
another tenant's run id is a 404). Writes are plain form posts, authenticated and
CSRF-checked by the middleware like any API write, answered with a redirect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from quarry.catalog.task_sources import TaskSources, task_sources
from quarry.core.errors import BadRequest, NotFound
from quarry.core.logs import REQUEST_ID
from quarry.runtime.runs.service import RunRequest, cancel_run, create_run
from quarry.runtime.services import services_of
from quarry.scheduling import admin
from quarry.store import runs as runq
from quarry.store.runs import ArtifactRow, RunRow, StepRow
from quarry.store.workspaces import WorkspaceRow
from quarry.web.apps import request_tenant
from quarry.web.layout import notice, render

router = APIRouter(include_in_schema=False)
LIST_LIMIT = 100
SCAN_LIMIT = 200  # newest runs read per workspace before the filters apply
STATES = ("queued", "running", "succeeded", "failed", "cancelled")
KINDS = ("workflow", "app", "agent")
ORIGINS = ("api", "schedule", "monitor", "cli")


@dataclass(frozen=True)
class StepView:
    key: str
    name: str
    state: str
    attempt: int
    rows: int | None
    seconds: float | None
    error: str | None
    output_url: str | None
    sql: str | None
    source: str | None  # the file:line of the step's task (quarry.catalog.task_sources)


def _workspaces(request: Request) -> list[WorkspaceRow]:
    svc = services_of(request.app.state)
    rows: list[WorkspaceRow] = svc.catalog.list_workspaces(request_tenant(request))
    return rows


def _list(request: Request) -> HTMLResponse:
    svc = services_of(request.app.state)
    tenant = request_tenant(request)
    q = request.query_params
    chosen = {k: q.get(k, "") for k in ("workspace", "kind", "state", "origin", "schedule")}
    spaces = _workspaces(request)
    found: list[tuple[str, RunRow]] = []
    schedules: list[str] = []  # "workspace:name" of every schedule, for the filter
    with svc.engine.connect() as conn:
        for ws in spaces:
            names = [v.name for v in admin.list_schedules(conn, tenant, ws.id, "schedule")]
            schedules.extend(f"{ws.name}:{n}" for n in names)
        for ws in spaces:
            if chosen["workspace"] and ws.name != chosen["workspace"]:
                continue
            fired: set[str] | None = None  # the runs the chosen schedule started
            if chosen["schedule"]:
                where, _, name = chosen["schedule"].partition(":")
                if where != ws.name or f"{where}:{name}" not in schedules:
                    continue
                fires = admin.list_fires(conn, tenant, ws.id, name, limit=SCAN_LIMIT)
                fired = {str(f["run_id"]) for f in fires if f["run_id"]}
            for run in runq.list_runs(conn, tenant, ws.id, limit=SCAN_LIMIT):
                if fired is not None and run.id not in fired:
                    continue
                if chosen["kind"] and run.target_kind != chosen["kind"]:
                    continue
                if chosen["state"] and run.state != chosen["state"]:
                    continue
                if chosen["origin"] and run.origin != chosen["origin"]:
                    continue
                found.append((ws.name, run))
        startable: list[tuple[str, str]] = []
        for ws in spaces:
            if ws.current_revision_id is None:
                continue
            listing = json.loads(
                svc.catalog.definitions(ws, ws.current_revision_id, "workflow").body
            )
            startable.extend((ws.name, d["name"]) for d in listing["definitions"])
    found.sort(key=lambda pair: pair[1].created_at, reverse=True)
    return render(
        request,
        "runs.html",
        title="Runs",
        section="runs",
        runs=found[:LIST_LIMIT],
        total=len(found),
        chosen=chosen,
        workspaces=[ws.name for ws in spaces],
        kinds=KINDS,
        states=STATES,
        origins=ORIGINS,
        schedules=schedules,
        startable=startable,
        notice=notice(request),
    )


@router.get("/runs", response_class=HTMLResponse)
async def runs_page(request: Request) -> HTMLResponse:
    return await run_in_threadpool(_list, request)


def _task_sql(svc: Any, ws: WorkspaceRow, run: RunRow) -> dict[str, str]:
    """The SQL of a workflow's top-level tasks (``tasks.N``), inline or from its file."""
    if run.target_kind != "workflow":
        return {}
    try:
        doc = svc.catalog.definition(ws, run.revision_id, "workflow", run.target_name)
        body = json.loads(doc.body)
    except NotFound:  # a pruned revision: the page still shows the run
        return {}
    spec = body.get("body", body)
    found: dict[str, str] = {}
    for index, task in enumerate(spec.get("tasks") or []):
        if not isinstance(task, dict):
            continue
        sql = task.get("sql_query") or task.get("sql")
        if isinstance(sql, str):
            found[f"tasks.{index}"] = sql
        elif isinstance(task.get("sql_file"), str):
            try:
                _, data = svc.catalog.file(ws, run.revision_id, task["sql_file"])
                found[f"tasks.{index}"] = f"-- {task['sql_file']}\n" + data.decode(
                    "utf-8", "replace"
                )
            except NotFound:  # the file is not in the revision: name it only
                found[f"tasks.{index}"] = f"-- {task['sql_file']}"
    return found


def _step_view(
    run: RunRow, step: StepRow, sql: dict[str, str], sources: TaskSources | None
) -> StepView:
    seconds = None
    if step.started_at and step.finished_at:
        seconds = round((step.finished_at - step.started_at).total_seconds(), 3)
    output = None
    if step.result_key and step.result_format:
        output = f"/api/v1/runs/{quote(run.id)}/steps/{quote(step.step_key)}/output?format=csv"
    return StepView(
        key=step.step_key,
        name=step.name,
        state=step.state,
        attempt=step.attempt,
        rows=step.rows,
        seconds=seconds,
        error=step.error,
        output_url=output,
        sql=sql.get(step.step_key),
        source=sources.of(step.step_key) if sources is not None else None,
    )


def _run_page(request: Request, run_id: str) -> HTMLResponse:
    svc = services_of(request.app.state)
    tenant = request_tenant(request)
    with svc.engine.connect() as conn:
        run = runq.get_run(conn, tenant, run_id)
        steps = runq.get_steps(conn, run_id)
        artifacts: list[ArtifactRow] = runq.list_artifacts(conn, run_id)
    ws = next((w for w in _workspaces(request) if w.id == run.workspace_id), None)
    sql = _task_sql(svc, ws, run) if ws is not None else {}
    sources = (
        task_sources(svc.engine, svc.catalog, ws, run.revision_id, run.target_kind, run.target_name)
        if ws is not None
        else None
    )
    views = [_step_view(run, s, sql, sources) for s in steps]
    failed = next((v for v in views if v.error and v.source), None)
    return render(
        request,
        "run.html",
        title=f"Run {run.id[:8]}",
        section="runs",
        run=run,
        workspace=ws.name if ws is not None else "",
        steps=views,
        error_source=failed.source if failed is not None else None,
        sources=sources.to_json() if sources is not None else None,
        artifacts=[a for a in artifacts if a.kind == "export"],
        notice=notice(request),
    )


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(request: Request, run_id: str) -> HTMLResponse:
    return await run_in_threadpool(_run_page, request, run_id)


async def _form(request: Request) -> dict[str, str]:
    raw = await request.body()
    return {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}


@router.post("/runs")
async def start_run(request: Request) -> Response:
    """Start a workflow at the current revision (the form on the runs page)."""
    form = await _form(request)
    workspace, _, name = form.get("target", "").partition(":")
    if not workspace or not name:
        raise BadRequest("pick a workflow to run", parameter="target")
    svc = services_of(request.app.state)

    def start() -> RunRow:
        ws = svc.catalog.workspace(request_tenant(request), workspace)
        run_request = RunRequest(
            target_kind="workflow", target_name=name, variables={}, request_id=REQUEST_ID.get()
        )
        created: RunRow = create_run(svc, ws, run_request)
        return created

    run = await run_in_threadpool(start)
    return RedirectResponse(f"/runs/{quote(run.id)}", status_code=303)


@router.post("/runs/{run_id}/cancel")
async def cancel(request: Request, run_id: str) -> Response:
    svc = services_of(request.app.state)
    tenant = request_tenant(request)
    await run_in_threadpool(cancel_run, svc.engine, svc.queue, tenant, run_id)
    return RedirectResponse(f"/runs/{quote(run_id)}?done=cancel_requested", status_code=303)


@router.post("/runs/{run_id}/retry")
async def retry(request: Request, run_id: str) -> Response:
    """A new run of the same target with the same values, at the same revision."""
    svc = services_of(request.app.state)
    tenant = request_tenant(request)

    def again() -> RunRow:
        with svc.engine.connect() as conn:
            old = runq.get_run(conn, tenant, run_id)
        ws = next(w for w in svc.catalog.list_workspaces(tenant) if w.id == old.workspace_id)
        run_request = RunRequest(
            target_kind=old.target_kind,
            target_name=old.target_name,
            variables=old.variables,
            revision=old.revision_id,
            request_id=REQUEST_ID.get(),
        )
        created: RunRow = create_run(svc, ws, run_request)
        return created

    run = await run_in_threadpool(again)
    return RedirectResponse(f"/runs/{quote(run.id)}", status_code=303)
