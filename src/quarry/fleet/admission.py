"""Admission control: refuse overload at once instead of queueing it.

Every request (health, readiness and metrics excepted) falls in one class by method
and path (``CLASSES``, first match wins): ``expensive`` (run creation, query
execution, chat, compile), ``stream`` (event streams, long-lived but idle) or
``cheap`` (everything else). Each class has a global ceiling on requests in flight,
and one tenant may hold at most ``tenant_share`` of it, so a flooding tenant leaves
the rest of the ceiling to the others. A request over either limit is answered ``503``
with a numeric ``Retry-After`` immediately, never parked. The counters live in the
event loop's thread and are only touched from it, so they need no lock.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from quarry.core.metrics import ADMISSION_REJECTIONS, HTTP_IN_FLIGHT

TenantOf = Callable[[Scope], str]

EXPENSIVE, CHEAP, STREAM = "expensive", "cheap", "stream"

# (method or "*", path regex, class): the one list that classifies requests.
CLASSES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"^/api/v1/workspaces/[^/]+/(runs|draft-runs)$"), EXPENSIVE),
    ("POST", re.compile(r"^/api/v1/workspaces/[^/]+/compile$"), EXPENSIVE),
    ("POST", re.compile(r"^/api/v1/workspaces/[^/]+/schedules/.+/trigger$"), EXPENSIVE),
    ("POST", re.compile(r"^/api/v1/workspaces/[^/]+/(query|sql|views/.+/query)$"), EXPENSIVE),
    ("POST", re.compile(r"^/api/v1/workspaces/[^/]+/agents/.+/(chat|messages)$"), EXPENSIVE),
    ("POST", re.compile(r"^/api/v1/.*/(chat|query)$"), EXPENSIVE),
    ("GET", re.compile(r"^/api/v1/runs/[^/]+/events$"), STREAM),
)
UNLIMITED = frozenset({"/healthz", "/readyz", "/livez", "/metrics", "/keepalive"})


_BY_METHOD: dict[str, tuple[tuple[re.Pattern[str], str], ...]] = {}


def classify(method: str, path: str) -> str:
    patterns = _BY_METHOD.get(method)
    if patterns is None:
        patterns = tuple((p, c) for m, p, c in CLASSES if m in ("*", method))
        _BY_METHOD[method] = patterns
    for pattern, cls in patterns:
        if pattern.match(path):
            return cls
    return CHEAP


@dataclass(frozen=True)
class Limits:
    expensive: int = 32
    cheap: int = 512
    stream: int = 256
    tenant_share: float = 0.5
    retry_after: int = 1

    def ceiling(self, cls: str) -> int:
        value: int = getattr(self, cls)
        return value

    def tenant_ceiling(self, cls: str) -> int:
        return max(1, math.floor(self.ceiling(cls) * self.tenant_share))


@dataclass
class _Gauge:
    total: int = 0
    tenants: dict[str, int] = field(default_factory=dict)


class Admission:
    """The in-flight counters and the admit/refuse decision."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._gauges = {cls: _Gauge() for cls in (EXPENSIVE, CHEAP, STREAM)}

    def in_flight(self, cls: str, tenant: str | None = None) -> int:
        gauge = self._gauges[cls]
        return gauge.total if tenant is None else gauge.tenants.get(tenant, 0)

    def try_acquire(self, cls: str, tenant: str) -> str | None:
        """None when admitted (the caller must ``release``), else the refusal reason."""
        gauge = self._gauges[cls]
        if gauge.total >= self.limits.ceiling(cls):
            return f"{cls}_global"
        held = gauge.tenants.get(tenant, 0)
        if held >= self.limits.tenant_ceiling(cls):
            return f"{cls}_tenant"
        gauge.total += 1
        gauge.tenants[tenant] = held + 1
        return None

    def release(self, cls: str, tenant: str) -> None:
        gauge = self._gauges[cls]
        gauge.total -= 1
        left = gauge.tenants[tenant] - 1
        if left:
            gauge.tenants[tenant] = left
        else:
            del gauge.tenants[tenant]


class AdmissionMiddleware:
    """``enabled=False`` still counts requests in flight (the metric) but refuses none."""

    def __init__(
        self, app: ASGIApp, admission: Admission, tenant_of: TenantOf, *, enabled: bool = True
    ) -> None:
        self.app = app
        self.admission = admission
        self.tenant_of = tenant_of
        self.enabled = enabled
        self._gauges = {cls: HTTP_IN_FLIGHT.labels(cls) for cls in (EXPENSIVE, CHEAP, STREAM)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED:
            await self.app(scope, receive, send)
            return
        cls = classify(scope["method"], scope["path"])
        tenant = self.tenant_of(scope)
        gauge = self._gauges[cls]
        if self.enabled:
            reason = self.admission.try_acquire(cls, tenant)
            if reason is not None:
                ADMISSION_REJECTIONS.labels(reason).inc()
                await self._refuse(send, reason)
                return
        gauge.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            gauge.dec()
            if self.enabled:
                self.admission.release(cls, tenant)

    async def _refuse(self, send: Send, reason: str) -> None:
        retry = str(self.admission.limits.retry_after).encode()
        body = json.dumps(
            {
                "error": "overloaded",
                "message": "too many requests in flight; retry after the given seconds",
                "details": {"reason": reason},
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", retry),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
