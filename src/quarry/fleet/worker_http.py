"""The worker's own small HTTP server: ``/healthz``, ``/readyz`` and ``/metrics``.

A ``quarry worker`` serves no API, but an orchestrator still probes it and Prometheus
still scrapes it. ``/readyz`` runs the given probes and also reports the process's
database loops (the worker, the schedule driver, reapers): one that has failed for
``unready_after`` seconds without a success makes it 503, naming the loop
(:mod:`quarry.runtime.queue.health`). The standard library's threading server is enough for three
read-only endpoints and keeps the worker free of an event loop; it runs on daemon
threads, so it never holds up the worker's graceful shutdown.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.registry import Collector

from quarry.fleet.metrics import CONTENT_TYPE, render_metrics
from quarry.runtime.queue.health import DEFAULT_UNREADY_AFTER, LOOPS

log = logging.getLogger(__name__)

Probe = Callable[[], None]


class WorkerHttp:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        health: Callable[[], dict[str, Any]],
        probes: dict[str, Probe],
        collectors: Iterable[Collector],
        metrics_token: str | None = None,
        unready_after: float = DEFAULT_UNREADY_AFTER,
    ) -> None:
        outer = self
        self.unready_after = unready_after
        self.health = health
        self.probes = probes
        self.collectors = list(collectors)
        self.metrics_token = metrics_token

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="quarry-worker-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        log.info("worker health and metrics on port %d", self.port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            self._json(request, 200, self.health())
        elif path == "/readyz":
            checks: dict[str, str] = {}
            for name, probe in self.probes.items():
                try:
                    probe()
                    checks[name] = "ok"
                except Exception as exc:
                    checks[name] = f"failed: {type(exc).__name__}"
            checks["work_loops"] = LOOPS.check(self.unready_after)
            ready = all(v == "ok" for v in checks.values())
            self._json(request, 200 if ready else 503, {"ready": ready, "checks": checks})
        elif path == "/metrics":
            if self.metrics_token is not None and not hmac.compare_digest(
                request.headers.get("authorization", "").encode(),
                f"Bearer {self.metrics_token}".encode(),
            ):
                self._json(request, 401, {"error": "unauthorized", "message": "scrape token"})
                return
            self._send(request, 200, render_metrics(self.collectors), CONTENT_TYPE)
        else:
            self._json(request, 404, {"error": "not_found", "message": f"no route {path}"})

    def _json(self, request: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        self._send(request, status, json.dumps(body).encode(), "application/json")

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, body: bytes, media: str) -> None:
        request.send_response(status)
        request.send_header("Content-Type", media)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
