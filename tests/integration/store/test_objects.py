from __future__ import annotations

import asyncio

import pytest

from quarry.core.errors import NotFound
from quarry.core.hashing import sha256_hex
from quarry.store.objects import blob_key, open_object_store
from tests.conftest import Backend


def test_round_trip_sync_and_async(backend: Backend) -> None:
    store = open_object_store(backend.blob_url)
    data = b"select 1\n"
    key = blob_key("acme", sha256_hex(data))
    assert not store.exists(key)
    store.put(key, data)
    assert store.exists(key)
    assert store.get(key) == data
    assert asyncio.run(store.get_async(key)) == data
    asyncio.run(store.put_async(key + ".copy", b"x"))
    assert store.get(key + ".copy") == b"x"
    store.delete(key)
    assert not store.exists(key)
    store.check()


def test_missing_key_is_not_found(backend: Backend) -> None:
    store = open_object_store(backend.blob_url)
    with pytest.raises(NotFound):
        store.get("t/acme/cas/00/" + "0" * 64)
    with pytest.raises(NotFound):
        asyncio.run(store.get_async("t/acme/nothing"))


@pytest.mark.parametrize("tenant", ["", "a/b", "..", "."])
def test_tenant_prefix_rejects_escapes(tenant: str) -> None:
    with pytest.raises(ValueError, match="invalid tenant"):
        blob_key(tenant, "0" * 64)


def test_blob_key_requires_a_digest() -> None:
    with pytest.raises(ValueError, match="sha256"):
        blob_key("acme", "../../etc/passwd")
