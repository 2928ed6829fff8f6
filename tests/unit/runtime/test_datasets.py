from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from quarry.core.errors import NotFound
from quarry.core.hashing import sha256_hex
from quarry.runtime.connectors.datasets import BlobCache, CorruptBlob
from quarry.store.objects import ObjectStore, blob_key
from quarry.store.revisions import FileRow


class MemoryStore(ObjectStore):
    url = "memory://"

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.gets = 0
        self.gate = threading.Event()
        self.gate.set()

    def put(self, key: str, data: bytes) -> None:
        self.data[key] = data

    def get(self, key: str) -> bytes:
        self.gets += 1
        self.gate.wait(5)
        if key not in self.data:
            raise NotFound(key)
        return self.data[key]

    def exists(self, key: str) -> bool:
        return key in self.data

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    async def put_async(self, key: str, data: bytes) -> None:
        self.put(key, data)

    async def get_async(self, key: str) -> bytes:
        return self.get(key)

    def check(self) -> None:
        return None


def _add(store: MemoryStore, data: bytes) -> str:
    digest = sha256_hex(data)
    store.put(blob_key("t1", digest), data)
    return digest


def test_blobs_are_fetched_once_even_by_concurrent_callers(tmp_path: Path) -> None:
    store = MemoryStore()
    digest = _add(store, b"a,b\n1,2\n")
    cache = BlobCache(tmp_path)
    store.gate.clear()
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(cache.ensure_blob, store, "t1", digest) for _ in range(8)]
        store.gate.set()
        paths = {f.result() for f in futures}
    assert paths == {tmp_path / "blobs" / digest}
    assert store.gets == 1 and cache.fetches == 1
    assert (tmp_path / "blobs" / digest).read_bytes() == b"a,b\n1,2\n"
    # A second cache on the same folder (another worker process) fetches nothing.
    BlobCache(tmp_path).ensure_blob(store, "t1", digest)
    assert store.gets == 1
    assert [p.name for p in (tmp_path / "blobs").iterdir()] == [digest]


def test_a_blob_that_does_not_match_its_hash_is_refused(tmp_path: Path) -> None:
    store = MemoryStore()
    digest = sha256_hex(b"right")
    store.put(blob_key("t1", digest), b"wrong")
    with pytest.raises(CorruptBlob):
        BlobCache(tmp_path).ensure_blob(store, "t1", digest)
    assert list(tmp_path.rglob("*")) == []


def test_dataset_folders_link_blobs_by_path(tmp_path: Path) -> None:
    store = MemoryStore()
    same = _add(store, b"x\n1\n")
    rows = [
        FileRow(".db/a.csv", "data", same, 4),
        FileRow(".db/nested/b.csv", "data", same, 4),
    ]
    cache = BlobCache(tmp_path)
    folder = cache.dataset_folder(store, "t1", "rev1", ".db", rows)
    assert folder == tmp_path / "datasets" / "rev1" / ".db"
    assert (folder / "a.csv").read_bytes() == b"x\n1\n"
    assert (folder / "nested" / "b.csv").read_bytes() == b"x\n1\n"
    assert (folder / "a.csv").stat().st_ino == (tmp_path / "blobs" / same).stat().st_ino
    assert store.gets == 1
    again = cache.dataset_folder(store, "t1", "rev1", ".db", [])
    assert again == folder and (again / "a.csv").exists()
    assert [p.name for p in folder.parent.iterdir()] == [".db"]
