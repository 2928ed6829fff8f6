"""App data: the stored result of an app for (revision, controls), or "run needed".

FleetOk: reads the catalog and the object store only. Results are written by app
runs (``POST /api/v1/workspaces/{ws}/runs`` with ``kind: app``); the ``404`` names the
revision and resolved controls to run with, so the run lands on this very key.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from quarry.api.deps import services, tenant_id
from quarry.core.errors import NotFound
from quarry.core.hashing import sha256_hex, short_id
from quarry.runtime.apps import app_result_key, resolve_controls
from quarry.runtime.apps.load import load_app

router = APIRouter(prefix="/api/v1/workspaces", tags=["apps"])

RESERVED = frozenset({"revision"})


@router.get("/{workspace}/apps/{name:path}/data")
async def app_data(
    request: Request,
    workspace: str,
    name: str,
    revision: Annotated[
        str | None,
        Query(pattern=r"^[0-9a-f]{8,64}$", description="Pin a stored revision."),
    ] = None,
) -> Response:
    """Other query parameters are control values, e.g. ``?region=North``."""
    svc = services(request)
    tenant = tenant_id(request)
    given: dict[str, Any] = {k: v for k, v in request.query_params.items() if k not in RESERVED}

    def load() -> tuple[bytes, str]:
        ws = svc.catalog.workspace(tenant, workspace)
        rev = svc.catalog.resolve(ws, revision)
        app = load_app(svc.catalog, ws, rev, name)
        controls = resolve_controls(app, given)
        key = app_result_key(tenant, ws.id, rev, name, controls)
        try:
            return svc.store.get(key), rev
        except NotFound:
            raise NotFound(
                f"no stored result for app {name!r} at revision {rev} with these controls; "
                "run the app to compute it",
                run_needed=True,
                app=name,
                revision_id=rev,
                controls=controls,
            ) from None

    body, rev = await run_in_threadpool(load)
    etag = f'"{short_id(sha256_hex(body))}"'
    headers = {"ETag": etag, "X-Quarry-Revision": rev, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
