"""Connectors: the databases named in ``config.yml``, answering Arrow tables."""

from quarry.runtime.connectors.base import BoundSql, Connector, ConnectorError
from quarry.runtime.connectors.datasets import BlobCache
from quarry.runtime.connectors.registry import Connections, UnknownDatabase

__all__ = [
    "BlobCache",
    "BoundSql",
    "Connections",
    "Connector",
    "ConnectorError",
    "UnknownDatabase",
]
