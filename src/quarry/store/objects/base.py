"""The object-store port: a handful of byte-level operations, sync and async.

Keys are always tenant-scoped (``t/<tenant>/...``) so one tenant's objects can never
be addressed through another tenant's prefix. Content-addressed blobs are written
once: their key is their sha256, so re-writing one is harmless and skipped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from quarry.core.errors import ConfigurationError


def tenant_prefix(tenant_id: str) -> str:
    if not tenant_id or "/" in tenant_id or tenant_id in {".", ".."}:
        raise ValueError(f"invalid tenant id for an object key: {tenant_id!r}")
    return f"t/{tenant_id}"


def blob_key(tenant_id: str, digest: str) -> str:
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"not a sha256 hex digest: {digest!r}")
    return f"{tenant_prefix(tenant_id)}/cas/{digest[:2]}/{digest}"


class ObjectStore(ABC):
    """What Quarry needs of S3 or a local folder, and nothing more."""

    url: str

    @abstractmethod
    def put(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def get(self, key: str) -> bytes:
        """Raise ``quarry.core.errors.NotFound`` when the key does not exist."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    async def put_async(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    async def get_async(self, key: str) -> bytes: ...

    @abstractmethod
    def check(self) -> None:
        """Raise when the store is unreachable (used by readiness probes)."""


def open_object_store(url: str) -> ObjectStore:
    from quarry.store.objects.obstore_adapter import ObstoreObjectStore

    if url.startswith(("file://", "s3://")):
        return ObstoreObjectStore(url)
    raise ConfigurationError(
        f"unsupported QUARRY_BLOB_URL {url!r}: use file:///absolute/path or s3://bucket/prefix"
    )
