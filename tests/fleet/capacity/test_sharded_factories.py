"""N Factories behind a workspace-sharded router, as real processes (issue #22).

Three Factory processes, each with its own database and volume (a shard is a whole
cell: Factory + state, docs/capacity.md), sit behind ``ShardRouter``. Workspaces are
registered *through the router* from one git origin; each lands on the shard the
hash picks, and asking every Factory directly shows only the owner knows it. Then
one Factory is SIGKILLed: the other shards' workspaces keep answering IDE requests
(their working copies) through the router, the dead shard's get a clean 503 naming
the shard (never another shard's answer), and once the Factory is restarted on the
same volume and database its workspaces answer again."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fleet.capacity.shard_router import ShardRouter, owner
from tests.integration.factory.gitrepos import make_origin
from tests.support.processes import (
    ServerProcess,
    serve_in_thread,
    start_quarry,
    wait_healthy,
)
from tests.support.services import create_database, drop_database, free_port, pg_url

pytestmark = pytest.mark.slow
SHARDS = ("shard-a", "shard-b", "shard-c")


def test_rendezvous_owner_moves_only_what_a_new_shard_takes() -> None:
    names = [f"ws-{i}" for i in range(600)]
    three = {n: owner(n, list(SHARDS)) for n in names}
    four = {n: owner(n, [*SHARDS, "shard-d"]) for n in names}
    moved = [n for n in names if three[n] != four[n]]
    assert moved and all(four[n] == "shard-d" for n in moved)
    assert {three[n] for n in names} == set(SHARDS)
    assert len(moved) < len(names) // 2  # about a quarter, never a reshuffle


@pytest.fixture
def shard_databases(pg_template: str) -> Iterator[dict[str, str]]:
    names = {shard: create_database(template=pg_template) for shard in SHARDS}
    try:
        yield {shard: pg_url(db) for shard, db in names.items()}
    finally:
        for db in names.values():
            drop_database(db)


def _factory_env(shard: str, database_url: str, base: Path) -> dict[str, str]:
    return {
        "QUARRY_DATABASE_URL": database_url,
        "QUARRY_BLOB_URL": (base / shard / "blobs").as_uri(),
        "QUARRY_DATA_DIR": str(base / shard / "data"),
        "QUARRY_WORKSPACES_DIR": str(base / shard / "workspaces"),
        "QUARRY_INPROCESS_WORKERS": "off",
        "QUARRY_GIT_ALLOW_LOCAL_ORIGINS": "1",
        "QUARRY_AUTH": "open",
        "QUARRY_SKIP_MIGRATIONS": "1",
    }


def _start_factory(shard: str, env: dict[str, str], port: int, base: Path) -> ServerProcess:
    server = start_quarry(
        ["serve", "--role", "ide", "--host", "127.0.0.1"],
        env,
        base / f"{shard}-{port}.log",
        port=port,
    )
    wait_healthy(server, 120)
    return server


def _names_covering_every_shard(per_shard: int) -> dict[str, list[str]]:
    owned: dict[str, list[str]] = {s: [] for s in SHARDS}
    i = 0
    while min(len(v) for v in owned.values()) < per_shard:
        name = f"ws-{i}"
        if len(owned[owner(name, list(SHARDS))]) < per_shard:
            owned[owner(name, list(SHARDS))].append(name)
        i += 1
    return owned


def test_router_sends_each_workspace_to_its_owner_and_survives_a_sigkill(
    shard_databases: dict[str, str], tmp_path: Path
) -> None:
    origin = make_origin(tmp_path)
    envs = {s: _factory_env(s, shard_databases[s], tmp_path) for s in SHARDS}
    ports = {s: free_port() for s in SHARDS}
    factories = {s: _start_factory(s, envs[s], ports[s], tmp_path) for s in SHARDS}
    router = ShardRouter({s: f.url for s, f in factories.items()}, connect_retry_seconds=0.5)
    owned = _names_covering_every_shard(2)
    try:
        with (
            serve_in_thread(router) as front,
            httpx.Client(base_url=front, timeout=60, trust_env=False) as client,
        ):
            for names in owned.values():
                for name in names:
                    made = client.post(
                        "/api/v1/workspaces", json={"name": name, "origin": origin.as_uri()}
                    )
                    assert made.status_code == 201, made.text
                    assert made.json()["compile"]["state"] == "succeeded", made.text

            # Only the owner knows each workspace: routing really picked it.
            for shard, names in owned.items():
                for name in names:
                    for other, factory in factories.items():
                        direct = httpx.get(f"{factory.url}/api/v1/workspaces/{name}", timeout=30)
                        assert direct.status_code == (200 if other == shard else 404), (
                            f"{name} on {other}: {direct.status_code}"
                        )
                    files = client.get(f"/api/v1/workspaces/{name}/files")
                    assert files.status_code == 200, files.text

            victim = "shard-b"
            os.kill(factories[victim].process.pid, signal.SIGKILL)
            assert factories[victim].process.wait(timeout=30) == -signal.SIGKILL

            for shard, names in owned.items():
                for name in names:
                    got = client.get(f"/api/v1/workspaces/{name}/files")
                    if shard == victim:
                        assert got.status_code == 503, got.text
                        assert got.headers["retry-after"] == "2"
                        assert "shard-b" in got.text
                    else:
                        assert got.status_code == 200, got.text

            factories[victim] = _start_factory(victim, envs[victim], ports[victim], tmp_path)
            for name in owned[victim]:
                back = client.get(f"/api/v1/workspaces/{name}/files")
                assert back.status_code == 200, back.text
    finally:
        for factory in factories.values():
            factory.stop()
