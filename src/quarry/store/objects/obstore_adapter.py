"""obstore behind the port: one adapter for both local folders and S3.

S3 endpoint, region and credentials come from the usual ``AWS_*`` environment
variables (obstore reads them itself), so secrets never pass through Quarry's
settings or logs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import obstore
from obstore.exceptions import NotFoundError
from obstore.store import LocalStore, S3Store

from quarry.core.errors import NotFound
from quarry.store.objects.base import ObjectStore


def _s3_store(bucket: str, prefix: str | None) -> S3Store:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    client_options: dict[str, Any] = {}
    if endpoint and endpoint.startswith("http://"):
        client_options["allow_http"] = True
    config: dict[str, Any] = {}
    if endpoint:
        config["endpoint"] = endpoint
        config["virtual_hosted_style_request"] = False
    if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        config["region"] = "us-east-1"
    return S3Store(
        bucket,
        prefix=prefix or None,
        config=config,  # type: ignore[arg-type]
        client_options=client_options,  # type: ignore[arg-type]
    )


class ObstoreObjectStore(ObjectStore):
    def __init__(self, url: str) -> None:
        self.url = url
        parsed = urlparse(url)
        self._store: LocalStore | S3Store
        if parsed.scheme == "file":
            root = Path(parsed.path)
            root.mkdir(parents=True, exist_ok=True)
            self._store = LocalStore(root)
        else:
            self._store = _s3_store(parsed.netloc, parsed.path.strip("/"))

    def put(self, key: str, data: bytes) -> None:
        obstore.put(self._store, key, data)

    def get(self, key: str) -> bytes:
        try:
            return obstore.get(self._store, key).bytes().to_bytes()
        except (NotFoundError, FileNotFoundError) as exc:
            raise NotFound(f"object {key!r} not found in {self.url}") from exc

    def exists(self, key: str) -> bool:
        try:
            obstore.head(self._store, key)
        except (NotFoundError, FileNotFoundError):
            return False
        return True

    def delete(self, key: str) -> None:
        try:
            obstore.delete(self._store, key)
        except (NotFoundError, FileNotFoundError):
            return

    async def put_async(self, key: str, data: bytes) -> None:
        await obstore.put_async(self._store, key, data)

    async def get_async(self, key: str) -> bytes:
        try:
            result = await obstore.get_async(self._store, key)
            return (await result.bytes_async()).to_bytes()
        except (NotFoundError, FileNotFoundError) as exc:
            raise NotFound(f"object {key!r} not found in {self.url}") from exc

    def check(self) -> None:
        obstore.list(self._store, prefix="t/", chunk_size=1).collect()
