"""What each kind of process runs (``quarry.node.roles``), on real services: the parts
a role's node holds, in their start order, and that they really start and stop —
the run workers' threads end, the worker's health server answers while it runs and
is gone after. A serve replica's node never loads the Factory package."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from quarry.core.settings import Role, Settings
from quarry.node.node import Node
from quarry.node.roles import Process, build_node
from quarry.node.services import build_services
from quarry.runtime.services import Services
from tests.support.services import free_port


def _names(node: Node) -> list[str]:
    return [c.name for c in node.components()]


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Services]:
    svc = build_services(
        Settings(data_dir=tmp_path / "data", auth="open").with_local_defaults(None)
    )
    yield svc
    svc.close()


def _fleet_settings(pg_database: str, tmp_path: Path, **overrides: object) -> Settings:
    return Settings(  # type: ignore[arg-type]
        database_url=pg_database,
        blob_url=(tmp_path / "blobs").as_uri(),
        data_dir=tmp_path / "data",
        **overrides,
    )


def test_the_local_server_runs_every_part_and_stops_them(local: Services) -> None:
    node = build_node(local, Process.SERVER)
    assert _names(node) == ["run-events", "scheduling", "run-workers", "scale-to-zero", "factory"]
    assert node.ide_proxy is None and node.worker_http is None
    assert node.scale_to_zero is not None and node.run_workers is not None
    assert node.scale_to_zero.workers == node.run_workers.workers  # the drain it kicks

    async def lifecycle() -> None:
        await node.start()
        assert all(t.is_alive() for t in node.run_workers._threads)  # type: ignore[union-attr]
        await node.stop()

    asyncio.run(lifecycle())
    assert not any(t.is_alive() for t in node.run_workers._threads)
    assert local.holds.count == 0


def test_parts_follow_the_topology_overrides(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", inprocess_workers="off", global_driver="off"
    ).with_local_defaults(None)
    svc = build_services(settings)
    try:
        assert _names(build_node(svc, Process.SERVER)) == [
            "run-events",
            "scale-to-zero",
            "factory",
        ]
    finally:
        svc.close()


def test_a_serve_replica_proxies_to_the_factory_and_runs_nothing_else(
    pg_database: str, tmp_path: Path
) -> None:
    svc = build_services(
        _fleet_settings(pg_database, tmp_path, role=Role.SERVE, ide_upstream="http://127.0.0.1:9")
    )
    try:
        node = build_node(svc, Process.SERVER)
        assert _names(node) == ["run-events", "ide-proxy", "scale-to-zero"]
        assert node.factory is None and node.run_workers is None
    finally:
        svc.close()


def test_a_serve_replica_never_imports_the_factory(pg_database: str, tmp_path: Path) -> None:
    script = (
        "import json, sys\n"
        "from quarry.api.app import create_app\n"
        "from quarry.core.settings import Role, Settings\n"
        "from quarry.node.roles import Process, build_node\n"
        "from quarry.node.services import build_services\n"
        f"svc = build_services(Settings(role=Role.SERVE, database_url={pg_database!r},"
        f" blob_url={(tmp_path / 'blobs').as_uri()!r}))\n"
        "create_app(build_node(svc, Process.SERVER))\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('quarry.factory'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_worker_process_serves_health_while_it_runs(pg_database: str, tmp_path: Path) -> None:
    port = free_port()
    svc = build_services(
        _fleet_settings(pg_database, tmp_path, role=Role.WORKER, worker_port=port, host="127.0.0.1")
    )
    try:
        node = build_node(svc, Process.WORKER)
        assert _names(node) == ["worker-http", "scheduling", "run-workers"]

        async def lifecycle() -> None:
            await node.start()
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                health = await client.get("/healthz")
                assert health.status_code == 200 and health.json()["role"] == "worker"
                ready = await client.get("/readyz")
                assert ready.status_code == 200, ready.text
            await node.stop()

        asyncio.run(lifecycle())
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert node.run_workers is not None and len(node.run_workers.stats) == 1
    finally:
        svc.close()


def test_the_driver_process_runs_the_driver_alone(pg_database: str, tmp_path: Path) -> None:
    svc = build_services(_fleet_settings(pg_database, tmp_path, role=Role.WORKER))
    try:
        assert _names(build_node(svc, Process.DRIVER)) == ["scheduling"]
    finally:
        svc.close()
