"""Connectors: the databases named in ``config.yml``, answering Arrow tables.

The names below are loaded on first use (PEP 562), so the connector host process
(``host_main``) that imports one connector module does not pay for the registry's
imports (the definitions models, SQLAlchemy) at every run's start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quarry.runtime.connectors.base import BoundSql, Connector, ConnectorError
    from quarry.runtime.connectors.datasets import BlobCache
    from quarry.runtime.connectors.registry import Connections, UnknownDatabase

_WHERE = {
    "BlobCache": "datasets",
    "BoundSql": "base",
    "Connections": "registry",
    "Connector": "base",
    "ConnectorError": "base",
    "UnknownDatabase": "registry",
}

__all__ = [
    "BlobCache",
    "BoundSql",
    "Connections",
    "Connector",
    "ConnectorError",
    "UnknownDatabase",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
