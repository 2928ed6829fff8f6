"""A stand-in for an HTTP-request scaler (ACA's HTTP rule, Knative, KEDA's HTTP
add-on) in front of a real Factory process.

- It reverse-proxies every request to the Factory and counts those in flight.
- After ``cooldown`` seconds with none in flight it stops the Factory: SIGTERM, then
  SIGKILL after ``term_grace`` — as a platform scales a replica to zero.
- The next request starts the Factory again and is held until it is healthy.
- ``evict()`` is the platform killing the replica on its own (SIGKILL, no warning).

The Factory's own keep-alive long-polls come through here like any request (its
``QUARRY_SELF_URL`` points at this proxy), which is the whole point: they are what
keeps the count above zero while the Factory works with no client connected.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import httpx

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}
)


class ScalerClosed(Exception):
    """A request arrived after the harness closed: answered 503, nothing started."""


@dataclass
class Event:
    at: float
    what: str  # start | healthy | stop | evict
    detail: str = ""


@dataclass
class ScalerHarness:
    start_factory: Callable[[], subprocess.Popen[bytes]]
    factory_url: str
    cooldown: float = 1.5
    term_grace: float = 5.0
    start_timeout: float = 90.0
    events: list[Event] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    in_flight: int = 0
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._lifecycle = threading.Lock()  # one start or stop at a time
        self._idle_since = time.monotonic()
        self._closed = False
        self._monitor = threading.Thread(target=self._watch, name="scaler", daemon=True)
        self._client: httpx.AsyncClient | None = None

    # -- what the tests read ---------------------------------------------------

    def count(self, what: str) -> int:
        with self._lock:
            return sum(1 for e in self.events if e.what == what)

    def keepalive_requests(self) -> int:
        with self._lock:
            return sum(1 for p in self.paths if p == "/keepalive")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- the platform's side ---------------------------------------------------

    def start_monitor(self) -> None:
        self._monitor.start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._monitor.join(10)
        with self._lifecycle:
            self._terminate("close")

    def evict(self) -> None:
        """The platform kills the replica on its own: SIGKILL, mid-task."""
        with self._lifecycle:
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGKILL)
                self.process.wait(15)
                self._event("evict", "SIGKILL")
            self.process = None

    def _event(self, what: str, detail: str = "") -> None:
        with self._lock:
            self.events.append(Event(time.monotonic(), what, detail))
            self._lock.notify_all()

    def _watch(self) -> None:
        """Scale to zero after ``cooldown`` seconds with no request in flight."""
        while True:
            with self._lock:
                if self._closed:
                    return
                if self.in_flight > 0 or not self.running:
                    self._lock.wait(0.5)  # woken by every request and lifecycle change
                    continue
                remaining = self._idle_since + self.cooldown - time.monotonic()
                if remaining > 0:
                    self._lock.wait(remaining)
                    continue
            with self._lifecycle, self._lock:
                still_idle = (
                    self.in_flight == 0 and time.monotonic() - self._idle_since >= self.cooldown
                )
            if still_idle:
                with self._lifecycle:
                    self._terminate("cooldown")

    def _terminate(self, why: str) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(self.term_grace)
            how = f"SIGTERM ({why}), exit {process.returncode}"
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)
            how = f"SIGKILL after SIGTERM ({why})"
        self._event("stop", how)

    def _ensure_running(self) -> None:
        with self._lifecycle:
            if self._closed:
                raise ScalerClosed("the scaler is closed")  # never start an orphan
            if self.running:
                return
            self.process = self.start_factory()
            self._event("start")
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the Factory exited at start ({self.process.returncode})")
                try:
                    # Straight to the Factory, like a platform's startup probe: not counted.
                    if httpx.get(f"{self.factory_url}/healthz", timeout=1.0).status_code == 200:
                        self._event("healthy")
                        return
                except httpx.HTTPError:
                    pass
                self._lock_wait(0.05)
            raise TimeoutError("the Factory did not become healthy")

    def _lock_wait(self, seconds: float) -> None:
        with self._lock:
            self._lock.wait(seconds)

    # -- the proxy (ASGI) ------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        with self._lock:
            self.in_flight += 1
            self.paths.append(scope["path"])
            self._lock.notify_all()
        try:
            await self._forward(scope, receive, send)
        except ScalerClosed as exc:
            await _plain(send, 503, f"scaler: {exc}")
        finally:
            with self._lock:
                self.in_flight -= 1
                if self.in_flight == 0:
                    self._idle_since = time.monotonic()
                self._lock.notify_all()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._client = httpx.AsyncClient(base_url=self.factory_url, timeout=None)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._client is not None:
                    await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await asyncio.to_thread(self._ensure_running)
        assert self._client is not None
        path = scope["path"] + (
            ("?" + scope["query_string"].decode()) if scope["query_string"] else ""
        )
        headers = [
            (k.decode(), v.decode()) for k, v in scope["headers"] if k.decode() not in HOP_BY_HOP
        ]
        try:
            request = self._client.build_request(
                scope["method"], path, headers=headers, content=body
            )
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            await _plain(send, 502, f"scaler: upstream failed: {exc}")
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (k.encode(), v.encode())
                        for k, v in response.headers.items()
                        if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"
                    ],
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except httpx.HTTPError:
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()


async def _plain(send: Send, status: int, text: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})
