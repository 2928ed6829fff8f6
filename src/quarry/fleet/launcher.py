"""``quarry fleet up``: a whole split fleet on one machine, for trying it and for tests.

One Factory (role ``ide``), N serve replicas and M workers run as separate ``quarry``
processes against one Postgres and one object store, exactly as they would on
separate machines; a small round-robin front door (the same streaming proxy the
replicas use for IDE routes, with several upstreams) runs in this process.

Stopping is the part that must not go wrong: children run in their own process group
(a terminal's Ctrl-C reaches only the launcher, which then stops them in order), are
asked to exit with SIGTERM, get a grace period, and are SIGKILLed after it; on Linux
each child also gets SIGTERM from the kernel if the launcher itself dies, so nothing
is left orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import uvicorn
from starlette.types import Scope

from quarry.fleet.proxy import ProxyConfig, ReverseProxy

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
HEALTH_TIMEOUT = 120.0


@dataclass(frozen=True)
class FleetPlan:
    """What to start; every child's state lives under ``data_dir/<child>``."""

    serve: int
    workers: int
    database_url: str
    blob_url: str
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    workspace: Path | None = None
    name: str | None = None
    grace: float = 20.0
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child, before exec: ask the kernel for SIGTERM when the launcher dies."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Launcher:
    """Start, watch and stop the children of one local fleet."""

    def __init__(self, plan: FleetPlan, echo: Callable[[str], None] = print) -> None:
        if plan.serve < 1:
            raise ValueError("a fleet needs at least one serve replica (--serve 1)")
        if plan.workers < 0:
            raise ValueError("--workers cannot be negative")
        self.plan = plan
        self.echo = echo
        self.children: list[Child] = []
        self._stopping = asyncio.Event()

    # -- starting ------------------------------------------------------------------
    def _env(self, name: str, **extra: str) -> dict[str, str]:
        data = self.plan.data_dir / name
        data.mkdir(parents=True, exist_ok=True)
        return {
            **os.environ,
            **self.plan.extra_env,
            "QUARRY_DATABASE_URL": self.plan.database_url,
            "QUARRY_BLOB_URL": self.plan.blob_url,
            "QUARRY_DATA_DIR": str(data),
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def _spawn(
        self, name: str, args: list[str], env: dict[str, str], url: str | None = None
    ) -> Child:
        logs = self.plan.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}.log"
        out: IO[bytes]
        with log_path.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "quarry", *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                process_group=0,  # Ctrl-C in a terminal reaches the launcher only
                preexec_fn=_die_with_parent,  # before exec: only async-signal-safe work
            )
        child = Child(name, process, log_path, url)
        self.children.append(child)
        return child

    def _start_factory(self) -> Child:
        port = free_port(self.plan.host)
        args = ["serve", "--role", "ide", "--host", self.plan.host, "--port", str(port)]
        if self.plan.workspace is not None:
            args.insert(1, str(self.plan.workspace))
            if self.plan.name:
                args += ["--name", self.plan.name]
        url = f"http://{self.plan.host}:{port}"
        return self._spawn("factory", args, self._env("factory"), url)

    def _start_replica(self, index: int, factory_url: str) -> Child:
        port = free_port(self.plan.host)
        name = f"serve-{index}"
        args = ["serve", "--role", "serve", "--host", self.plan.host, "--port", str(port)]
        env = self._env(name, QUARRY_IDE_UPSTREAM=factory_url)
        return self._spawn(name, args, env, f"http://{self.plan.host}:{port}")

    def _start_worker(self, index: int) -> Child:
        name = f"worker-{index}"
        return self._spawn(name, ["worker"], self._env(name))

    async def _wait_healthy(self, children: list[Child]) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT
        pending = [c for c in children if c.url is not None]
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            while pending:
                if self._stopping.is_set():
                    raise FleetStopped
                for child in list(pending):
                    if child.process.poll() is not None:
                        raise FleetFailed(
                            f"{child.name} exited with code {child.process.returncode} while "
                            f"starting; its log ({child.log_path}):\n{child.tail()}"
                        )
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"{child.url}/healthz")).status_code == 200:
                            pending.remove(child)
                if time.monotonic() > deadline:
                    names = ", ".join(c.name for c in pending)
                    raise FleetFailed(f"{names} not healthy after {HEALTH_TIMEOUT:g}s")
                if pending:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), 0.1)

    async def start(self) -> list[Child]:
        factory = self._start_factory()
        await self._wait_healthy([factory])
        assert factory.url is not None
        replicas = [self._start_replica(i + 1, factory.url) for i in range(self.plan.serve)]
        workers = [self._start_worker(i + 1) for i in range(self.plan.workers)]
        await self._wait_healthy(replicas)
        # A worker has no port: it is up once it is still running after the replicas.
        for worker in workers:
            if worker.process.poll() is not None:
                raise FleetFailed(f"{worker.name} exited while starting:\n{worker.tail()}")
        return replicas

    # -- stopping ------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stopping.set()

    async def stop(self) -> None:
        """SIGTERM every child (replicas and workers before the Factory), wait for the
        grace period, SIGKILL what is left, and reap everything."""
        order = [c for c in self.children if c.name != "factory"] + [
            c for c in self.children if c.name == "factory"
        ]
        for child in order:
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.plan.grace
        for child in order:
            remaining = max(deadline - time.monotonic(), 0.0)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(child.process.wait, remaining)
        for child in order:
            if child.process.poll() is None:
                self.echo(f"{child.name} (pid {child.pid}) ignored SIGTERM; killing it")
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
        for child in order:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=10)

    # -- watching ------------------------------------------------------------------
    async def _watch(self) -> None:
        """Say so when a child dies; the rest keep running (a dead Factory is what the
        fleet is meant to survive)."""
        reported: set[str] = set()
        while not self._stopping.is_set():
            for child in self.children:
                code = child.process.poll()
                if code is not None and child.name not in reported:
                    reported.add(child.name)
                    self.echo(f"{child.name} (pid {child.pid}) exited with code {code}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 0.5)


class FleetFailed(Exception):
    """A child did not come up; the launcher stops the others and reports why."""


class FleetStopped(Exception):
    """Stopped (a signal) before the fleet was up."""


class _FrontDoor(uvicorn.Server):
    """uvicorn without its own signal handling: the launcher owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _FrontDoorApp:
    def __init__(self, proxy: ReverseProxy) -> None:
        self.proxy = proxy

    async def __call__(self, scope: Scope, receive: object, send: object) -> None:
        if scope["type"] == "lifespan":
            return  # lifespan="off"; the launcher starts and closes the proxy
        await self.proxy(scope, receive, send)  # type: ignore[arg-type]


def describe(children: list[Child], front: str) -> list[str]:
    lines = [f"fleet up: front door {front}"]
    for child in children:
        where = child.url or "-"
        lines.append(f"  {child.name:<10} {where:<28} pid {child.pid:<8} log {child.log_path}")
    lines.append("Ctrl-C (or SIGTERM) stops the whole fleet")
    return lines


async def run_fleet(plan: FleetPlan, echo: Callable[[str], None] = print) -> int:
    """Start everything, serve the front door until a signal, stop everything."""
    launcher = Launcher(plan, echo)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, launcher.request_stop)
    code = 0
    proxy: ReverseProxy | None = None
    try:
        replicas = await launcher.start()
        proxy = ReverseProxy(
            ProxyConfig(
                upstreams=tuple(r.url for r in replicas if r.url),
                connect_retry_seconds=2.0,
                upstream_name="every serve replica",
                upstream_setting="last tried",
                unavailable_hint="see the replicas' logs; retry in {retry}s",
            )
        )
        await proxy.start()
        config = uvicorn.Config(
            _FrontDoorApp(proxy),
            host=plan.host,
            port=plan.port,
            log_config=None,
            lifespan="off",
            access_log=False,
        )
        server = _FrontDoor(config)
        serving = asyncio.ensure_future(server.serve())
        watcher = asyncio.ensure_future(launcher._watch())
        started = time.monotonic()
        while not server.started and not serving.done():
            if time.monotonic() - started > 30:
                raise FleetFailed(f"the front door did not start on {plan.host}:{plan.port}")
            await asyncio.sleep(0.02)
        if serving.done():
            with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind
                serving.result()
            raise FleetFailed(f"the front door could not listen on {plan.host}:{plan.port}")
        for line in describe(launcher.children, f"http://{plan.host}:{plan.port}/"):
            echo(line)
        await launcher._stopping.wait()
        echo("stopping the fleet")
        server.should_exit = True
        await serving
        watcher.cancel()
    except FleetStopped:
        echo("stopped while starting")
    except FleetFailed as exc:
        echo(f"error: {exc}")
        code = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if proxy is not None:
            await proxy.close()
        await launcher.stop()
    echo("fleet stopped")
    return code
