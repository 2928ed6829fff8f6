"""The IDE: a workspace's files in a CodeMirror editor, its compile problems inline,
and the git workflow (diff, commit, branches, switch, pull, push), over the
Factory's file and git API.

These pages are IdeOnly (``quarry.fleet.routes``): registered only where the Factory
runs, and a serve replica proxies them there, like the API they call. The page
itself is a shell; ``static/ide.js`` reads and writes through
``/api/v1/workspaces/{ws}/files`` and ``.../git/...`` (so a page adds no write path
of its own: the same expected-hash check, path confinement and editor role) and
loads the CodeMirror bundle (``static/vendor/codemirror.min.js``) lazily.

Two reads are served here: the JSON Schemas of the definition kinds, generated from
the pydantic models the compiler uses (the editor's completion and validation), and
the compile status as server-sent events (the ``compile_status`` rows, read from the
database, sent whenever they change).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from pydantic import AliasChoices, BaseModel, TypeAdapter
from starlette.concurrency import run_in_threadpool

from quarry.catalog.compile_status import compile_status
from quarry.definitions.models import agent, agentic, app, monitor, schedule, semantic, workflow
from quarry.definitions.models.config import WorkspaceConfig
from quarry.runtime.services import services_of
from quarry.store.workspaces import WorkspaceRow
from quarry.web.apps import request_tenant
from quarry.web.assets import asset_url
from quarry.web.layout import STRICT_CSP, render, viewer

router = APIRouter(include_in_schema=False)

# What the page's editor validates a file against, by the kind its name gives it
# (``quarry.definitions.kinds``): the models the compiler itself reads them with.
SCHEMA_MODELS: dict[str, Any] = {
    "config": WorkspaceConfig,
    "workflow": workflow.WorkflowConfig,
    "app": app.AppConfig,
    "agent": agent.AgentConfig,
    "agentic": agentic.AgenticConfig,
    "view": semantic.ViewConfig,
    "topic": semantic.TopicConfig,
    "schedule": schedule.ScheduleConfig,
    "monitor": monitor.MonitorConfig,
    "motif": semantic.MotifConfig,
    "query": semantic.SavedQueryConfig,
}
POLL_SECONDS = 0.5  # how often the event stream reads the compile status
HEARTBEAT_SECONDS = 15.0
STREAM_SECONDS = 600.0  # then the stream ends; the page reconnects


def _other_spellings() -> dict[str, dict[str, str]]:
    """Model name -> {another key the model accepts: the property it fills}: the
    older spellings of ``AliasChoices`` (``data_repos`` for ``repositories``) and field
    names that ``populate_by_name`` accepts beside an alias. A JSON Schema names one
    key per property, so these are added to it, or the editor would flag valid keys."""
    found: dict[str, dict[str, str]] = {}
    stack: list[type[BaseModel]] = [BaseModel]
    seen: set[type[BaseModel]] = set()
    while stack:
        for cls in stack.pop().__subclasses__():
            if cls in seen:
                continue
            seen.add(cls)
            stack.append(cls)
            if not cls.__module__.startswith("quarry.definitions."):
                continue
            for name, field in cls.model_fields.items():
                keys: list[str] = []
                if isinstance(field.validation_alias, AliasChoices):
                    keys = [c for c in field.validation_alias.choices if isinstance(c, str)]
                elif field.alias and field.alias != name:
                    keys = [field.alias]
                if cls.model_config.get("populate_by_name") and name not in keys:
                    keys.append(name)
                for other in keys[1:]:
                    found.setdefault(cls.__name__, {})[other] = keys[0]
    return found


def _add_spellings(schema: dict[str, Any], spellings: dict[str, dict[str, str]]) -> None:
    targets = [schema, *schema.get("$defs", {}).values()]
    for target in targets:
        props = target.get("properties")
        extra = spellings.get(str(target.get("title", "")), {})
        if not isinstance(props, dict):
            continue
        for other, primary in extra.items():
            if primary in props and other not in props:
                props[other] = {**props[primary], "description": f"another name for {primary}"}


@lru_cache(maxsize=1)
def schemas_json() -> bytes:
    """Every kind's JSON Schema, one document (built once per process)."""
    out: dict[str, Any] = {}
    spellings = _other_spellings()
    for kind, model in SCHEMA_MODELS.items():
        schema = TypeAdapter(model).json_schema(by_alias=True)
        _add_spellings(schema, spellings)
        out[kind] = schema
    return json.dumps(out, separators=(",", ":")).encode()


def _workspaces(request: Request) -> list[WorkspaceRow]:
    svc = services_of(request.app.state)
    rows: list[WorkspaceRow] = svc.catalog.list_workspaces(request_tenant(request))
    return rows


def _index(request: Request) -> Response:
    spaces = _workspaces(request)
    if len(spaces) == 1:
        return RedirectResponse(f"/ide/{quote(spaces[0].name)}", status_code=303)
    return render(
        request, "ide_index.html", title="IDE", section="ide", workspaces=[w.name for w in spaces]
    )


def ide_csp(nonce: str) -> str:
    """The strict policy, but for styles: CodeMirror writes its theme into one
    ``<style>`` element (allowed by a nonce made for this response, not by
    'unsafe-inline') and positions its tooltips and panels with style attributes
    (``style-src-attr``; an attribute cannot run script, and workspace text is only
    ever inserted as text). Scripts stay 'self' only."""
    return STRICT_CSP.replace(
        "style-src 'self'", f"style-src 'self' 'nonce-{nonce}'; style-src-attr 'unsafe-inline'"
    )


def _page(request: Request, workspace: str) -> HTMLResponse:
    svc = services_of(request.app.state)
    ws = svc.catalog.workspace(request_tenant(request), workspace, fresh=True)  # 404 if not ours
    base = f"/api/v1/workspaces/{quote(ws.name)}"
    nonce = secrets.token_urlsafe(18)
    config = {
        "workspace": ws.name,
        "filesUrl": f"{base}/files",
        "gitUrl": f"{base}/git",
        "draftRunsUrl": f"{base}/draft-runs",
        "statusUrl": f"{base}/compile/status",
        "eventsUrl": f"/ide/{quote(ws.name)}/compile/events",
        "schemasUrl": "/ide/schemas.json",
        "editorUrl": asset_url("vendor/codemirror.min.js"),
        "file": request.query_params.get("file", ""),
        "canEdit": viewer(request).can_edit,
        "styleNonce": nonce,
    }
    return render(
        request,
        "ide.html",
        title=f"IDE: {ws.name}",
        section="ide",
        csp=ide_csp(nonce),
        workspace=ws.name,
        config=config,
    )


@router.get("/ide", response_class=HTMLResponse)
async def ide_index(request: Request) -> Response:
    return await run_in_threadpool(_index, request)


@router.get("/ide/schemas.json")
async def ide_schemas(request: Request) -> Response:
    request_tenant(request)  # signed in, like every page
    body = await run_in_threadpool(schemas_json)
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-cache"})


@router.get("/ide/{workspace}", response_class=HTMLResponse)
async def ide_page(request: Request, workspace: str) -> HTMLResponse:
    return await run_in_threadpool(_page, request, workspace)


def _statuses(request: Request, workspace: str) -> dict[str, Any]:
    svc = services_of(request.app.state)
    return compile_status(svc.catalog, svc.engine, request_tenant(request), workspace)


@router.get("/ide/{workspace}/compile/events")
async def compile_events(request: Request, workspace: str) -> StreamingResponse:
    """``event: status`` with the compile status (as ``GET .../compile/status``) at
    once and whenever it changes; a comment line as a heartbeat; ``event: end`` after
    :data:`STREAM_SECONDS` (the page opens a new stream)."""
    first = await run_in_threadpool(_statuses, request, workspace)  # 404 before streaming

    async def frames() -> AsyncIterator[bytes]:
        last = json.dumps(first, sort_keys=True)
        seq = 1
        yield f"id: {seq}\nevent: status\ndata: {last}\n\n".encode()
        started = beat = time.monotonic()
        while time.monotonic() - started < STREAM_SECONDS:
            await asyncio.sleep(POLL_SECONDS)
            if await request.is_disconnected():
                return
            now = await run_in_threadpool(_statuses, request, workspace)
            text = json.dumps(now, sort_keys=True)
            if text != last:
                last, seq = text, seq + 1
                yield f"id: {seq}\nevent: status\ndata: {text}\n\n".encode()
                beat = time.monotonic()
            elif time.monotonic() - beat > HEARTBEAT_SECONDS:
                beat = time.monotonic()
                yield b": heartbeat\n\n"
        yield b"event: end\ndata: {}\n\n"

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
