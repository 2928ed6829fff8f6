"""The landing page: what this Quarry serves, with links into the API."""

from __future__ import annotations

import html
import json

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from quarry.catalog.reader import Catalog
from quarry.web.apps import request_tenant

router = APIRouter(include_in_schema=False)

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Quarry</title>
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
code{{background:#f3f3f3;padding:0 .2rem}}td{{padding:.1rem .8rem .1rem 0}}</style></head>
<body><h1>Quarry</h1><p>API reference: <a href="/openapi.json">/openapi.json</a></p>{body}
</body></html>"""


def _render(catalog: Catalog, tenant: str) -> str:
    parts: list[str] = []
    for ws in catalog.list_workspaces(tenant):
        name = html.escape(ws.name)
        parts.append(f"<h2>Workspace <code>{name}</code></h2>")
        if ws.current_revision_id is None:
            parts.append("<p>Not compiled yet.</p>")
            continue
        parts.append(f"<p>Current revision <code>{html.escape(ws.current_revision_id)}</code></p>")
        listing = json.loads(catalog.definitions(ws, ws.current_revision_id, None).body)
        rows = []
        for d in listing["definitions"]:
            url = f"/api/v1/workspaces/{name}/definitions/{d['kind']}/{html.escape(d['name'])}"
            rows.append(
                f'<tr><td>{html.escape(d["kind"])}</td><td><a href="{url}">'
                f"{html.escape(d['name'])}</a></td><td><code>{html.escape(d['path'])}</code></td></tr>"
            )
        parts.append("<table>" + "".join(rows) + "</table>")
    return _PAGE.format(body="".join(parts) or "<p>No workspaces yet.</p>")


@router.get("/", response_class=HTMLResponse)
async def index(request: Request) -> HTMLResponse:
    svc = request.app.state.services
    page = await run_in_threadpool(_render, svc.catalog, request_tenant(request))
    return HTMLResponse(page)
