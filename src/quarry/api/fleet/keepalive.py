"""Scale-to-zero on the HTTP side: ``GET /keepalive``, and the hooks a request runs.

``GET /keepalive?hold=SECONDS`` is the long-poll the self keep-alive
(:mod:`quarry.fleet.keepalive`) holds open through the platform's ingress: it
answers after ``hold`` seconds (capped by ``QUARRY_KEEPALIVE_MAX_HOLD_SECONDS``) or
as soon as the process has no holds left, whichever comes first. It is FleetOk and
unauthenticated, like ``/healthz``: it reads no tenant data, only the hold counts.

:class:`ScaleToZeroMiddleware` (raw ASGI, in front of everything) does two things
with the node's :class:`~quarry.fleet.scale_to_zero.ScaleToZero`:

- the first HTTP request after a cold start triggers startup recovery, whose hold is
  taken before that request completes;
- every write request (POST, PUT, PATCH, DELETE) ends with a kick of the drain loop
  whose hold is taken before the response's last byte is sent — a run the request
  queued is covered from the moment it exists until the drain has run it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quarry.api.deps import services
from quarry.fleet.scale_to_zero import ScaleToZero

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
KEEPALIVE_PATH = "/keepalive"


@router.get(KEEPALIVE_PATH)
async def keepalive(
    request: Request,
    hold: float = Query(45.0, ge=0, description="Seconds to hold the request open at most."),
) -> dict[str, Any]:
    """Hold the connection open for ``hold`` seconds or until no holds are left."""
    svc = services(request)
    holds = svc.holds
    cap = svc.settings.keepalive_max_hold_seconds
    seconds = min(hold, cap)
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def on_change(count: int) -> None:
        if count == 0:
            loop.call_soon_threadsafe(changed.set)

    started = loop.time()
    deadline = started + seconds
    unsubscribe = holds.subscribe(on_change)
    try:
        # Listeners may report a stale zero (they run outside the counter's lock):
        # the count itself decides.
        while holds.count > 0:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            changed.clear()
            if holds.count == 0:
                break
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                break
    finally:
        unsubscribe()
    return {
        "held_seconds": round(loop.time() - started, 3),
        "hold_cap_seconds": cap,
        "holds": holds.count,
        "by_reason": holds.by_reason(),
    }


class ScaleToZeroMiddleware:
    def __init__(self, app: ASGIApp, *, scale: ScaleToZero) -> None:
        self.app = app
        self.scale = scale

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.scale.on_request()
        if scope.get("method") not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        kicked = False

        async def send_after_kick(message: Message) -> None:
            nonlocal kicked
            if (
                not kicked
                and message["type"] == "http.response.body"
                and not message.get("more_body", False)
            ):
                kicked = True
                self.scale.kick()
            await send(message)

        try:
            await self.app(scope, receive, send_after_kick)
        finally:
            if not kicked:
                self.scale.kick()
