"""The one settings tree, read once at process start and passed down explicitly.

Nothing reads the environment at import time: ``load_settings()`` is called by the
CLI (or a test) and the resulting object travels through constructors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from quarry.core.roles import Role as Role  # defined apart for the CLI; imported from here too

OnOff = Literal["on", "off"]


class Settings(BaseSettings):
    """Every knob Quarry has; each maps to a ``QUARRY_*`` environment variable."""

    model_config = SettingsConfigDict(env_prefix="QUARRY_", extra="ignore")

    role: Role = Field(Role.ALL, description="ide | serve | worker | all")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the state database; default: SQLite under data_dir.",
    )
    database_read_url: str | None = Field(
        None,
        description="SQLAlchemy URL of a streaming read replica of the state database; "
        "serve answers the run history and workspace listings from it (they may lag the "
        "primary by the replica's replay lag; docs/capacity.md, 'Read replicas'). "
        "Unset: every read goes to database_url.",
    )
    database_pool_size: int = Field(
        10,
        ge=1,
        description="Connections each process keeps open to a Postgres state database "
        "(docs/capacity.md sizes it against max_connections).",
    )
    database_max_overflow: int = Field(
        10,
        ge=0,
        description="Connections a process may open past database_pool_size in a burst "
        "(closed again when returned).",
    )
    blob_url: str | None = Field(
        None,
        description="Object store: file:///path or s3://bucket/prefix; default: data_dir/blobs.",
    )
    data_dir: Path | None = Field(
        None, description="Local-mode state folder; default: the workspace's .quarry/."
    )
    skip_migrations: bool = Field(False, description="Do not migrate at boot; check only.")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    tenant: str = Field("local", description="Tenant that local-mode workspaces belong to.")
    workspaces_dir: Path | None = Field(None, description="Factory's clone cache (cloud mode).")
    git_credentials: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Origin credentials by host, JSON: {"github.com": "user:token"}; '
        "handed to git through a credential helper, never logged.",
    )
    git_timeout_seconds: float = Field(120.0, gt=0, description="Limit on one git command.")
    git_allow_local_origins: bool = Field(
        False, description="Let the API register file:// or path origins (tests, local dev)."
    )
    file_max_bytes: int = Field(
        2_000_000, gt=0, description="Largest text file the file API writes."
    )
    dataset_file_max_bytes: int = Field(
        50_000_000, gt=0, description="Largest file the file API writes under a dataset folder."
    )
    compile_debounce_seconds: float = Field(
        0.5, ge=0, description="Quiet time after a write before the Factory compiles."
    )
    # -- hostile input: compile isolation and request limits (docs/factory.md) --
    yaml_max_depth: int = Field(100, ge=1, description="Deepest nesting a YAML file may have.")
    yaml_max_alias_nodes: int = Field(
        10_000, ge=0, description="Nodes YAML aliases may add to a file once expanded."
    )
    compile_isolation: Literal["process", "inline"] = Field(
        "process", description="Parse definitions in a limited child process, or inline."
    )
    compile_memory_bytes: int = Field(
        1 << 30, ge=0, description="Address-space cap of the compile process (0: none)."
    )
    compile_stack_bytes: int = Field(
        8 << 20, ge=0, description="Stack cap of the compile process (0: inherited)."
    )
    compile_file_timeout_seconds: float = Field(
        30.0, gt=0, description="Time one definition file may take in the compile process."
    )
    request_max_body_bytes: int = Field(
        1_048_576, gt=0, description="Largest request body (file writes: see file_max_bytes)."
    )
    request_max_query_bytes: int = Field(
        16_384, gt=0, description="Longest query string (app control values travel there)."
    )
    run_max_variables: int = Field(100, ge=0, description="Variables one run request may set.")
    run_variable_max_bytes: int = Field(
        65_536, gt=0, description="Largest value of one run variable, as JSON."
    )
    ide_upstream: str | None = Field(None, description="Factory URL a serve replica proxies to.")
    ide_connect_timeout: float = Field(
        5.0, gt=0, description="Seconds the IDE proxy waits to connect to the Factory."
    )
    ide_read_timeout: float = Field(
        120.0, gt=0, description="Seconds the IDE proxy waits for each read from the Factory."
    )
    ide_connect_retry_seconds: float = Field(
        10.0,
        ge=0,
        description="How long the IDE proxy retries a refused connection (a Factory cold "
        "start) before answering 503.",
    )
    ide_retry_after_seconds: int = Field(
        5, ge=0, description="Retry-After of the proxy's 503 when the Factory is down."
    )
    ide_max_connections: int = Field(
        100, gt=0, description="Connections the IDE proxy pools to the Factory."
    )
    self_url: str | None = Field(None, description="This process's own ingress (keep-alive).")
    # -- scale-to-zero (docs/scale-to-zero.md) --
    min_replicas: int = Field(
        0, ge=0, description="1 or more: the platform keeps the Factory always on; keep-alive off."
    )
    keepalive_hold_seconds: float = Field(
        45.0, gt=0, description="Hold of each self long-poll GET /keepalive while work is held."
    )
    keepalive_max_hold_seconds: float = Field(
        60.0, gt=0, description="Longest hold GET /keepalive grants (caps ?hold=)."
    )
    inprocess_workers: OnOff | None = None
    global_driver: OnOff | None = None
    strict_templates: bool = Field(
        False,
        description="An undefined name in a template is an error instead of printing "
        "nothing (Oxy's default); also --strict-templates, or per workspace "
        "defaults.strict_templates in config.yml.",
    )
    template_fuel: int = Field(
        5_000_000,
        gt=0,
        description="Engine steps one template render may take (loop steps, string "
        "building); past it the render fails.",
    )
    template_max_output_chars: int = Field(
        10_000_000, gt=0, description="Longest text one template render may produce."
    )
    schedule_tick_seconds: float = Field(
        1.0,
        gt=0,
        description="Longest sleep of the global driver between ticks (it wakes "
        "earlier when a schedule is due).",
    )
    schedule_catchup_seconds: float = Field(
        5.0,
        ge=0,
        description="Due times at most this far in the past each fire on their own; "
        "older missed windows fold into one fire on recovery.",
    )
    queue_purge_after_seconds: float = Field(
        7 * 86400.0, gt=0, description="The driver purges finished tasks older than this."
    )
    alert_delivery_attempts: int = Field(
        5, ge=1, description="Attempts per alert webhook delivery (exponential backoff)."
    )
    alert_delivery_timeout: float = Field(
        5.0, gt=0, description="Seconds one webhook delivery attempt may take."
    )
    revision_cache_ttl: float = Field(
        1.0,
        ge=0,
        description="Seconds a replica may keep serving the previous current revision after "
        "another node promoted a new one.",
    )
    definition_cache_size: int = Field(4096, ge=0, description="Definitions kept in memory.")
    semantic_cache_ttl: float = Field(
        300.0,
        ge=0,
        description="Seconds a semantic query answer is shared from the object store "
        "(0: every request runs its query).",
    )
    semantic_max_body: int = Field(
        65536, ge=1024, description="Largest semantic query request body, in bytes."
    )
    semantic_max_rows: int = Field(
        100_000,
        ge=1,
        description="Most rows one semantic query API answer carries; more are cut off "
        "and the answer says so (X-Quarry-Truncated).",
    )
    worker_lease_seconds: float = Field(
        30.0, gt=0, description="A claimed task's lease; heartbeats extend it every third."
    )
    worker_shutdown_grace: float = Field(
        15.0, ge=0, description="Seconds a stopping worker lets its current step finish."
    )
    worker_batch: int = Field(
        1,
        ge=1,
        description="Run workers claim up to N tasks per statement and record their "
        "successes together, one task at a time (short runs only; docs/queue.md, "
        "'Batched workers'); 1: the default worker.",
    )
    queue_unready_after_seconds: float = Field(
        30.0,
        gt=0,
        description="/readyz answers 503 once a worker's claims (or the driver's ticks) "
        "have failed without a success for this long.",
    )
    step_timeout_seconds: float = Field(
        3600.0,
        ge=0,
        description="Default limit on one SQL/formatter step of a run (a task's timeout: "
        "overrides it); 0: none.",
    )
    run_deadline_seconds: float = Field(
        86400.0,
        ge=0,
        description="A run fails if it has not finished this long after it was created; 0: none.",
    )
    run_events_poll_seconds: float = Field(
        1.0,
        gt=0,
        description="A run's event stream wakes on a push (LISTEN/NOTIFY); it also re-reads "
        "this often as a safety net (every 0.2 s at most while push is down).",
    )
    access_log: bool = Field(
        False, description="Log every HTTP request (uvicorn's access log); costly on hot reads."
    )
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    # -- authentication and backpressure (docs/security.md, docs/configuration.md) --
    auth: Literal["auto", "open", "tokens"] = Field(
        "auto",
        description="open: every request is the local tenant's admin (loud warning); tokens: "
        "bearer tokens required; auto: open only for role all on SQLite with no active token.",
    )
    auth_cache_ttl: float = Field(
        5.0, ge=0, description="Seconds a token lookup is cached in memory (revocation bound)."
    )
    metrics_token: str | None = Field(
        None, description="If set, GET /metrics needs 'Authorization: Bearer <this>'."
    )
    admission: OnOff = Field("on", description="Admission control on HTTP requests.")
    admission_expensive_max: int = Field(
        32, ge=1, description="Global ceiling on in-flight expensive requests (runs, compile…)."
    )
    admission_cheap_max: int = Field(512, ge=1, description="Ceiling on in-flight other requests.")
    admission_stream_max: int = Field(256, ge=1, description="Ceiling on open event streams.")
    admission_tenant_share: float = Field(
        0.5, gt=0, le=1, description="Fraction of each ceiling one tenant may hold."
    )
    admission_retry_after: int = Field(1, ge=1, description="Retry-After seconds on a 503.")
    queue_max_queued_per_tenant: int = Field(
        1000, ge=0, description="Queued tasks one tenant may have; over it: 429 (0: no cap)."
    )
    agent_max_concurrent_turns: int = Field(
        20,
        ge=0,
        description="Agent thread turns one tenant may have queued or running at once; "
        "a message past it is refused with 429 (0: no ceiling).",
    )
    agent_turn_slots: int = Field(
        256,
        ge=1,
        description="Agent thread turns one worker runs at once (they wait on models); a "
        "workflow run is still run alone (docs/agents.md, 'Many turns on one worker').",
    )
    agent_max_tokens_per_day: int = Field(
        0,
        ge=0,
        description="Model tokens (input + output) one tenant's thread turns may use per UTC "
        "day; a message past it is refused with 429 until midnight UTC (0: no ceiling).",
    )
    worker_port: int | None = Field(
        None, ge=0, le=65535, description="quarry worker: port of /healthz, /readyz, /metrics."
    )
    metrics_cache_seconds: float = Field(
        2.0, ge=0, description="Seconds queue figures read at scrape time are reused."
    )
    # -- containment of workspace code (docs/security.md) --
    duckdb_memory_limit: str = Field("2GB", description="memory_limit of each DuckDB database.")
    duckdb_threads: int = Field(2, ge=1, description="threads of each DuckDB database.")
    duckdb_max_temp_size: str = Field(
        "10GB", description="Spill space each DuckDB database may use in its run's temp folder."
    )
    duckdb_allowed_paths: list[Path] = Field(
        default_factory=list,
        description="Fleet mode: files or folders a config.yml DuckDB path: may name outside "
        'the revision, JSON: ["/data/shared.duckdb"]. Local mode allows any path.',
    )
    warehouse_allow: list[str] = Field(
        default_factory=list,
        description="If set, warehouse hosts must match one entry (host glob, IP or CIDR).",
    )
    warehouse_deny: list[str] = Field(
        default_factory=list, description="Warehouse hosts refused (host glob, IP or CIDR)."
    )
    warehouse_allow_loopback: bool | None = Field(
        None,
        description="Let warehouses resolve to loopback/link-local addresses; "
        "default: yes on SQLite (local mode), no on PostgreSQL (fleet).",
    )
    warehouse_allow_state_cluster: bool = Field(
        False,
        description="Tests only: let warehouses be the state database's own cluster.",
    )
    warehouse_pool_size: int = Field(
        8,
        ge=0,
        description="Idle Postgres/Redshift/Airhouse connections a process keeps between "
        "runs per set of connection values; 0: no pooling.",
    )
    warehouse_pool_max_open: int = Field(
        0,
        ge=0,
        description="Connections per set of connection values a process may have open "
        "at once (idle or in use); past it a run waits. 0: no limit.",
    )
    warehouse_pool_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="How long a run waits for a warehouse connection when "
        "QUARRY_WAREHOUSE_POOL_MAX_OPEN are in use before failing naming the database.",
    )
    tenant_sql_isolation: Literal["process", "inline"] | None = Field(
        None,
        description="process: run tenant SQL in a child process with no secrets in its "
        "environment; inline: in the serving process (sandboxed only). Default: process on "
        "roles ide/all with a PostgreSQL state database, inline elsewhere.",
    )
    secret_env_allow: dict[str, list[str]] | None = Field(
        None,
        description='Environment variables *_var fields may name, per tenant, JSON: {"acme": '
        '["ACME_*"], "*": ["SHARED_PG_PASSWORD"]}; default: none in fleet mode, all in local '
        "mode. QUARRY_* and AWS_* are never resolvable.",
    )

    @field_validator(
        "database_url",
        "database_read_url",
        "blob_url",
        "ide_upstream",
        "self_url",
        "metrics_token",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    def with_local_defaults(self, workspace: Path | None) -> Settings:
        """Fill in the embedded defaults (SQLite + local folder) under ``data_dir``."""
        data_dir = self.data_dir or ((workspace / ".quarry") if workspace else Path(".quarry"))
        data_dir = data_dir.resolve()
        updates: dict[str, object] = {"data_dir": data_dir}
        if self.database_url is None:
            updates["database_url"] = f"sqlite:///{data_dir / 'state.db'}"
        if self.blob_url is None:
            updates["blob_url"] = (data_dir / "blobs").as_uri()
        return self.model_copy(update=updates)


def load_settings(**overrides: object) -> Settings:
    """Read ``QUARRY_*`` once; explicit CLI flags win over the environment."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)  # type: ignore[arg-type]
