"""Logging set up once per process: human text locally, JSON lines in a fleet."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

# The id of the HTTP request (or the run it created) this code is working for: set by
# the request-id middleware per request and by the worker per run, so every log
# record carries it without threading it through calls.
REQUEST_ID: ContextVar[str | None] = ContextVar("quarry_request_id", default=None)
_GOOD_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def accept_request_id(given: str | None) -> str:
    """A caller's ``X-Request-Id`` when it is a sane token, else a new one."""
    if given and _GOOD_ID.match(given):
        return given
    return os.urandom(16).hex()


@contextmanager
def request_context(request_id: str | None) -> Iterator[None]:
    token = REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        REQUEST_ID.reset(token)


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (unless the call gave one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        payload.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


# Loggers whose INFO lines are the machinery talking (migrations, the topology, the
# server starting, a compile or a run the CLI already reports): on a human's screen
# they are DEBUG unless ``--verbose``; machines (JSON) get them at INFO as before.
QUIET_FOR_HUMANS: tuple[str, ...] = (
    "alembic",
    "uvicorn.error",
    "quarry.node.services",
    "quarry.store.migrate",
    "quarry.factory.compiler",
    "quarry.runtime.runs.executor",
)

_verbose = False


def set_verbose(verbose: bool) -> None:
    """``quarry --verbose``: show the machinery's INFO lines too (set before logging is
    configured, which every command does first)."""
    global _verbose
    _verbose = verbose


class HumanLevels(logging.Filter):
    """Shows a human what is theirs to read: records from :data:`QUIET_FOR_HUMANS` at
    INFO count as DEBUG (and say so), then the threshold applies."""

    def __init__(self, threshold: int, quiet: tuple[str, ...]) -> None:
        super().__init__()
        self.threshold = threshold
        self.quiet = quiet

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if record.levelno == logging.INFO and any(
            name == q or name.startswith(q + ".") for q in self.quiet
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return record.levelno >= self.threshold


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Text for people (timestamps, the machinery's chatter at DEBUG unless verbose),
    JSON lines for machines (``QUARRY_LOG_FORMAT=json``: every record at ``level``)."""
    threshold = logging.getLevelName(level.upper())
    if not isinstance(threshold, int):
        threshold = logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.addFilter(HumanLevels(threshold, () if _verbose else QUIET_FOR_HUMANS))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(threshold)
