"""The image's entrypoint runs every role as the image would (non-root uid, the
Containerfile's environment, read-only source, one writable data volume) against a
real Postgres and a local S3 server: ``migrate`` migrates and exits, ``wait-for-schema``
waits for it, and ``ide``, ``serve``, ``worker`` and ``all`` answer ``/healthz`` and
``/readyz`` with ``QUARRY_SKIP_MIGRATIONS=1``; SIGTERM stops each one cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fleet.deploy.image import IMAGE_UID, ImageRoot, image_root
from tests.support.processes import wait_until
from tests.support.services import S3Server, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def image() -> Iterator[ImageRoot]:
    with image_root() as root:
        yield root


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _check_role(
    image: ImageRoot, role: str, common: dict[str, str], log: Path, **extra: str
) -> str:
    volume = image.data_dir(role)
    port, worker_port = free_port(), free_port()
    env = {
        **common,
        "QUARRY_ROLE": role,
        "QUARRY_HOST": "127.0.0.1",  # the image binds 0.0.0.0; tests stay on loopback
        "QUARRY_PORT": str(port),
        "QUARRY_WORKER_PORT": str(worker_port),
        **extra,
    }
    process = image.start(volume, log, env=env)
    url = f"http://127.0.0.1:{env['QUARRY_WORKER_PORT' if role == 'worker' else 'QUARRY_PORT']}"
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"{role} exited {process.returncode}:\n{log.read_text()}")
            return _ok(f"{url}/healthz")

        wait_until(healthy, 120, f"{role} /healthz")
        wait_until(lambda: _ok(f"{url}/readyz"), 30, f"{role} /readyz")
        # exec, not a child: PID of the entrypoint is Quarry itself, as the image's uid.
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert any(part.endswith(b"/bin/quarry") for part in cmdline), cmdline
        assert not any(part.endswith(b"entrypoint.sh") for part in cmdline), cmdline
        status = Path(f"/proc/{process.pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        expected_uid = IMAGE_UID if os.geteuid() == 0 else os.geteuid()
        assert uid_line.split()[1] == str(expected_uid)
        # The image's HEALTHCHECK command, in the same environment.
        check = image.run(volume, "healthcheck", env=env)
        assert check.returncode == 0, check.stderr
        process.send_signal(signal.SIGTERM)
        # uvicorn re-raises SIGTERM after its graceful shutdown (tini reports 143).
        assert process.wait(60) in {0, -signal.SIGTERM}, log.read_text()
        graceful = "stopped:" if role == "worker" else "Application shutdown complete"
        assert graceful in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
    written = {p.relative_to(volume).parts[0] for p in volume.rglob("*")}
    return f"{role}: {sorted(written)}"


def test_every_role_runs_as_the_image_would(
    image: ImageRoot, s3_server: S3Server, empty_pg_database: str, tmp_path: Path
) -> None:
    common = {
        **s3_server.env,
        "QUARRY_DATABASE_URL": empty_pg_database,
        "QUARRY_BLOB_URL": f"s3://{s3_server.create_bucket()}/quarry",
        "QUARRY_SCHEMA_WAIT_SECONDS": "0",
    }
    scratch = image.data_dir("scratch")
    # Before the migrate job: an initContainer would keep waiting, and gives up here.
    waiting = image.run(scratch, "wait-for-schema", env=common)
    assert waiting.returncode == 1, waiting.stdout + waiting.stderr
    assert "run `quarry migrate`" in waiting.stderr

    migrated = image.run(scratch, env={**common, "QUARRY_ROLE": "migrate"})
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "applied" in migrated.stdout
    again = image.run(scratch, env={**common, "QUARRY_ROLE": "migrate"})
    assert again.returncode == 0 and "schema current" in again.stdout
    waited = image.run(scratch, "wait-for-schema", env=common)
    assert waited.returncode == 0, waited.stderr

    # The source is read-only to the image's user: nothing can be written there.
    probe = subprocess.run(
        [*image.command()[:-1], "sh", "-c", f"touch {image.app}/src/x"],
        capture_output=True,
        text=True,
    )
    assert probe.returncode != 0

    fleet = {**common, "QUARRY_SKIP_MIGRATIONS": "1"}
    factory_port = free_port()
    factory = _check_role(image, "ide", fleet, tmp_path / "ide.log", QUARRY_PORT=str(factory_port))
    assert "workspaces" in factory or "tmp" in factory
    _check_role(
        image,
        "serve",
        fleet,
        tmp_path / "serve.log",
        QUARRY_IDE_UPSTREAM=f"http://127.0.0.1:{factory_port}",
    )
    _check_role(image, "worker", fleet, tmp_path / "worker.log")
    _check_role(image, "all", fleet, tmp_path / "all.log")


def test_an_unknown_role_is_refused_by_name(image: ImageRoot) -> None:
    result = image.run(image.data_dir("x"), env={"QUARRY_ROLE": "factory"})
    assert result.returncode == 64
    assert "QUARRY_ROLE=factory is not one of: ide, serve, worker, all, migrate" in result.stderr
