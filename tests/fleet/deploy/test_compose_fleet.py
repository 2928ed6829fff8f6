"""``deploy/compose.yaml``'s topology as real processes: each Quarry service of the
compose file is started through the image's entrypoint (non-root, read-only source,
its own data volume) with that service's environment, in ``depends_on`` order —
Postgres and S3 are the test's real database and moto server, compose hostnames
become loopback ports. The migrate one-shot migrates an empty database; the Factory
compiles the demo workspace; a run created through serve-1 is executed by a worker
(the Factory runs none) and read back through serve-2."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from quarry.demo import create_demo_workspace
from tests.fleet.deploy.image import IMAGE_UID, ImageRoot, image_root
from tests.fleet.roles.conftest import issue_token
from tests.support.processes import wait_until
from tests.support.services import S3Server, free_port
from tests.unit.deploy.compose import QUARRY_IMAGE, role, services, start_order

pytestmark = pytest.mark.slow

PROVIDED = {"postgres", "s3", "bucket"}  # the test's real Postgres and moto server


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def image() -> Iterator[ImageRoot]:
    with image_root() as root:
        yield root


def test_the_compose_topology_runs_as_processes(
    image: ImageRoot, s3_server: S3Server, empty_pg_database: str, tmp_path: Path
) -> None:
    compose = services()
    order = [n for n in start_order(compose) if n not in PROVIDED]
    assert set(order) == {n for n, s in compose.items() if s.get("image") == QUARRY_IMAGE} - {
        "bucket"
    }
    workspace = create_demo_workspace(image.root / "workspace")
    if os.geteuid() == 0:
        for path in [workspace, *workspace.rglob("*")]:
            os.chown(path, IMAGE_UID, IMAGE_UID, follow_symlinks=False)
    bucket = s3_server.create_bucket()
    ports = {name: (free_port(), free_port()) for name in order}

    def env_of(name: str) -> dict[str, str]:
        env = {str(k): str(v) for k, v in (compose[name].get("environment") or {}).items()}
        if "QUARRY_DATABASE_URL" in env:
            env["QUARRY_DATABASE_URL"] = empty_pg_database
        if "QUARRY_BLOB_URL" in env:
            env["QUARRY_BLOB_URL"] = re.sub(
                r"^s3://[^/]+", f"s3://{bucket}", env["QUARRY_BLOB_URL"]
            )
            env.update(s3_server.env)
        if "QUARRY_IDE_UPSTREAM" in env:
            assert env["QUARRY_IDE_UPSTREAM"] == "http://factory:8000"
            env["QUARRY_IDE_UPSTREAM"] = f"http://127.0.0.1:{ports['factory'][0]}"
        port, worker_port = ports[name]
        return {
            **env,
            "QUARRY_HOST": "127.0.0.1",
            "QUARRY_PORT": str(port),
            "QUARRY_WORKER_PORT": str(worker_port),
        }

    def args_of(name: str) -> list[str]:
        command: list[str] = compose[name].get("command", [])
        return [str(workspace) if a == "/workspace" else a for a in command]

    running: dict[str, tuple[subprocess.Popen[bytes], str, Path]] = {}
    try:
        for name in order:
            spec: dict[str, Any] = compose[name]
            env = env_of(name)
            if spec.get("restart") == "no":  # a one-shot: must complete successfully
                done = image.run(image.data_dir(name), *args_of(name), env=env)
                assert done.returncode == 0, done.stdout + done.stderr
                continue
            log = tmp_path / f"{name}.log"
            process = image.start(image.data_dir(name), log, *args_of(name), env=env)
            port_key = "QUARRY_WORKER_PORT" if role(spec) == "worker" else "QUARRY_PORT"
            url = f"http://127.0.0.1:{env[port_key]}"
            running[name] = (process, url, log)
            for dependency, rule in spec.get("depends_on", {}).items():
                if rule["condition"] == "service_healthy" and dependency in running:
                    assert _healthy(running[dependency][1]), dependency

            def up(
                process: subprocess.Popen[bytes] = process, url: str = url, log: Path = log
            ) -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"exited {process.returncode}:\n{log.read_text()}")
                return _healthy(url)

            wait_until(up, 180, f"{name} healthy")

        token = issue_token(empty_pg_database)
        client = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30)
        serve_1, serve_2 = running["serve-1"][1], running["serve-2"][1]
        listing = client.get(f"{serve_1}/api/v1/workspaces/shop/definitions")
        assert listing.status_code == 200 and listing.json()["definitions"], listing.text
        created = client.post(
            f"{serve_1}/api/v1/workspaces/shop/runs",
            json={"name": "workflows/monthly_revenue"},
        )
        assert created.status_code in {200, 201, 202}, created.text
        run_id = created.json()["id"]

        def finished() -> bool:
            state = client.get(f"{serve_2}/api/v1/runs/{run_id}").json()["state"]
            return state in {"succeeded", "failed", "cancelled"}

        wait_until(finished, 120, f"run {run_id} to finish")
        assert client.get(f"{serve_2}/api/v1/runs/{run_id}").json()["state"] == "succeeded"
        # Executed by a worker: the workers' own /metrics count the run.
        ran = 0.0
        for name in ("worker-1", "worker-2"):
            text = httpx.get(f"{running[name][1]}/metrics", timeout=5).text
            for line in text.splitlines():
                if line.startswith("quarry_run_duration_seconds_count"):
                    ran += float(line.rsplit(" ", 1)[1])
        assert ran >= 1
        factory_metrics = httpx.get(f"{running['factory'][1]}/metrics", timeout=5).text
        assert not [
            line
            for line in factory_metrics.splitlines()
            if line.startswith("quarry_run_duration_seconds_count") and not line.endswith(" 0.0")
        ]
        client.close()
    finally:
        for process, _url, _log in reversed(list(running.values())):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _url, _log in running.values():
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        shutil.rmtree(workspace, ignore_errors=True)
