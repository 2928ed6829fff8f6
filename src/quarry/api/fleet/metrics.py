"""``GET /metrics`` (FleetOk): Prometheus text; public unless ``metrics_token`` is set."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from quarry.api.deps import services
from quarry.fleet.metrics import CONTENT_TYPE, QueueCollector, render_metrics

router = APIRouter(tags=["health"])


def queue_collector(request: Request) -> QueueCollector:
    found = getattr(request.app.state, "queue_collector", None)
    if isinstance(found, QueueCollector):
        return found
    svc = services(request)
    collector = QueueCollector(svc.queue, svc.settings.metrics_cache_seconds)
    request.app.state.queue_collector = collector
    return collector


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    expected = services(request).settings.metrics_token
    if expected is not None:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            raise HTTPException(
                401, "metrics need the scrape token", headers={"WWW-Authenticate": "Bearer"}
            )
    body = await run_in_threadpool(render_metrics, [queue_collector(request)])
    return Response(body, media_type=CONTENT_TYPE)
