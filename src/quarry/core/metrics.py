"""The process's Prometheus instruments, on one registry Quarry owns.

They live at the bottom layer so the run executor, the compiler and the HTTP layer
can all record into them; ``quarry.fleet.metrics`` renders them (with the queue
figures read at scrape time) for ``GET /metrics``. A registry of our own, not the
client's global one, keeps a test process that builds many apps from registering
collectors twice.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

HTTP_IN_FLIGHT = Gauge(
    "quarry_http_requests_in_flight",
    "HTTP requests being served now, by admission class (expensive, cheap, stream).",
    ["class"],
    registry=REGISTRY,
)
ADMISSION_REJECTIONS = Counter(
    "quarry_admission_rejections",
    "Requests refused by admission control (503) or the queued-task cap (429), by reason.",
    ["reason"],
    registry=REGISTRY,
)
RUN_DURATION = Histogram(
    "quarry_run_duration_seconds",
    "Wall time of a run attempt that finished, by target kind and final state.",
    ["kind", "state"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
COMPILE_DURATION = Histogram(
    "quarry_compile_duration_seconds",
    "Wall time of a workspace compile, by outcome (ok, failed).",
    ["outcome"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
PROXY_ERRORS = Counter(
    "quarry_proxy_errors",
    "Requests a serve replica could not proxy to the Factory, by reason.",
    ["reason"],
    registry=REGISTRY,
)
SEMANTIC_QUERIES = Counter(
    "quarry_semantic_queries",
    "Semantic query API answers, by cache outcome (hit: from memory or the shared store; "
    "miss: run on the warehouse).",
    ["cache"],
    registry=REGISTRY,
)
QUEUE_RECONNECTS = Counter(
    "quarry_queue_reconnects",
    "Queue worker connections replaced after a database error left them unusable "
    "(a restarted server, a terminated backend).",
    registry=REGISTRY,
)
FACTORY_START_REMAINING = Gauge(
    "quarry_factory_start_remaining",
    "Workspaces the Factory's start-up pass has still to clone or compile (0 once it is "
    "done): only interrupted compiles and missing working copies, not every workspace.",
    registry=REGISTRY,
)

# Children that exist from the start, so a dashboard sees zeros rather than gaps.
for _outcome in ("hit", "miss"):
    SEMANTIC_QUERIES.labels(_outcome)
for _cls in ("expensive", "cheap", "stream"):
    HTTP_IN_FLIGHT.labels(_cls)
    ADMISSION_REJECTIONS.labels(f"{_cls}_global")
    ADMISSION_REJECTIONS.labels(f"{_cls}_tenant")
ADMISSION_REJECTIONS.labels("queue_full")
