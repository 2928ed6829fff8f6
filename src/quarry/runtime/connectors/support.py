"""What the warehouse connectors share, and which ``config.yml`` databases a run
cannot open.

:class:`WarehouseConnector` is the common prologue of every connector reached over
the network (Postgres and its wire cousins, MySQL, ClickHouse, BigQuery, Snowflake,
Domo): the resolved settings, the policy the guard checks them under, the redaction
of resolved secrets from error text, and a lock. ``unsupported_reason`` is the answer
the compile gives as a warning (``quarry.definitions.database_support``), given again
when a run opens the database, as a connector error naming the type."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from quarry.definitions.database_support import unsupported_reason
from quarry.runtime.connectors.base import Connector, ConnectorError
from quarry.runtime.connectors.guard import CheckedTarget, check_host
from quarry.runtime.connectors.policy import ConnectorPolicy, current_policy

__all__ = ["Redact", "WarehouseConnector", "unique_names", "unsupported_reason"]

Redact = Callable[[str], str]


def _no_redaction(message: str) -> str:
    return message


class WarehouseConnector(Connector):
    """A connector to a database over the network, opened under ``policy``.

    Subclasses take ``(name, settings, *, policy, redact)`` (``kinds.open_connector``)
    and read their resolved values from ``self._settings``."""

    def __init__(
        self,
        name: str,
        settings: Mapping[str, Any],
        *,
        policy: ConnectorPolicy | None = None,
        redact: Redact = _no_redaction,
    ) -> None:
        self.name = name
        self._settings: dict[str, Any] = dict(settings)
        self._policy = policy or current_policy()
        self._redact = redact
        self._lock = threading.Lock()
        self._setup()

    def _setup(self) -> None:
        """A subclass's own state (its clients, what is running), set at construction."""

    def _check_url(self, url: str, label: str) -> CheckedTarget:
        """The guard's verdict on an http(s) URL's host (an API endpoint, a token URL)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectorError(
                f"database {self.name!r}: the {label} is not an http(s) URL", database=self.name
            )
        default = 443 if parts.scheme == "https" else 80
        return check_host(self.name, parts.hostname, parts.port or default, self._policy)


def unique_names(names: list[str]) -> list[str]:
    """Column names made unique (``a``, ``a_1``...): Arrow tables need them."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name}_{count}")
    return out
