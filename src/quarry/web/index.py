"""Home: each workspace with its revision, branch and last compile, the recent runs,
and the schedules whose last run failed.

Why one page: it is the answer to "is everything all right?" — what is live, what
broke, what to look at next — with links into every other screen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from quarry.core.errors import NotFound
from quarry.runtime.apps.result import humanize
from quarry.runtime.services import services_of
from quarry.scheduling import admin
from quarry.store import factory_tables as ft
from quarry.store import runs as runq
from quarry.store.runs import RunRow
from quarry.web.apps import request_tenant
from quarry.web.layout import render

router = APIRouter(include_in_schema=False)
RECENT_RUNS = 10


@dataclass(frozen=True)
class WorkspaceCard:
    name: str
    revision_id: str | None
    branch: str | None
    commit: str | None
    compiled_at: str | None
    definitions: int
    compile_state: str | None
    problems: int
    problem_lines: list[str]
    apps: list[tuple[str, str]]  # (title, page URL)


def _card(svc: Any, conn: Any, ws: Any) -> WorkspaceCard:
    revision: dict[str, Any] = {}
    apps: list[tuple[str, str]] = []
    if ws.current_revision_id is not None:
        revision = json.loads(svc.catalog.revision(ws, ws.current_revision_id).body)
        listing = json.loads(svc.catalog.definitions(ws, ws.current_revision_id, "app").body)
        apps = [
            (humanize(d["name"]), f"/workspaces/{quote(ws.name)}/apps/{quote(d['name'])}")
            for d in listing["definitions"]
        ]
    statuses = ft.statuses(conn, ws.id)
    latest = next((s for s in statuses if s.branch == ws.default_branch), None)
    if latest is None and statuses:
        latest = max(statuses, key=lambda s: s.updated_at)
    problems = latest.problems if latest is not None else []
    lines = [
        f"{p.get('file', '?')}:{p.get('line', '?')}: {p.get('message', '')}" for p in problems[:5]
    ]
    return WorkspaceCard(
        name=ws.name,
        revision_id=ws.current_revision_id,
        branch=revision.get("git_branch") or (latest.branch if latest else None),
        commit=revision.get("git_commit"),
        compiled_at=revision.get("created_at"),
        definitions=int(revision.get("definition_count") or 0),
        compile_state=latest.state if latest is not None else None,
        problems=len(problems),
        problem_lines=lines,
        apps=apps,
    )


def _home(request: Request) -> HTMLResponse:
    svc = services_of(request.app.state)
    tenant = request_tenant(request)
    cards: list[WorkspaceCard] = []
    runs: list[tuple[str, RunRow]] = []
    failing: list[dict[str, Any]] = []
    firing: list[dict[str, Any]] = []
    for ws in svc.catalog.list_workspaces(tenant):
        with svc.engine.connect() as conn:
            cards.append(_card(svc, conn, ws))
            runs.extend(
                (ws.name, r) for r in runq.list_runs(conn, tenant, ws.id, limit=RECENT_RUNS)
            )
            for view in admin.list_schedules(conn, tenant, ws.id):
                if view.last_run_id is None:
                    continue
                try:
                    last = runq.get_run(conn, tenant, view.last_run_id)
                except NotFound:
                    continue  # the run was pruned
                if last.state == "failed":
                    failing.append({"workspace": ws.name, "schedule": view, "run": last})
            firing.extend(
                {"workspace": ws.name, **alert}
                for alert in admin.list_alerts(conn, tenant, ws.id)
                if alert["state"] == "firing"
            )
    runs.sort(key=lambda pair: pair[1].created_at, reverse=True)
    return render(
        request,
        "home.html",
        title="Home",
        section="home",
        workspaces=cards,
        runs=runs[:RECENT_RUNS],
        failing=failing,
        firing=firing,
    )


@router.get("/", response_class=HTMLResponse)
async def index(request: Request) -> HTMLResponse:
    return await run_in_threadpool(_home, request)
