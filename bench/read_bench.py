"""Read benchmark: ``GET`` of one compiled definition through the real server, side by
side with a bare ASGI endpoint returning the same bytes from memory (the ceiling).

* **quarry**: ``quarry serve WS --port P`` (one uvicorn process, SQLite + local
  folder under a temporary ``QUARRY_DATA_DIR``), serving a generated workspace
  (``--size`` definitions, default 1,000); the URL is
  ``/api/v1/workspaces/bench/definitions/workflow/<name>``.
* **bare ASGI**: a raw ASGI callable (no framework) served by ``uvicorn.run`` with
  exactly the arguments ``quarry serve`` uses (``host``, ``port``,
  ``log_config=None``, so the same ``http``/``loop`` auto-choice and the same access
  logging through Quarry's logging set-up), answering every request with the bytes
  and headers the real server returned for that definition (``200``, or ``304`` on a
  matching ``If-None-Match``).

Both servers run at once, each pinned to core 0 (``taskset``), and ``wrk`` runs on
core 1; the servers are loaded one at a time, after a warm-up run that fills the
definition cache. Each row is the median of ``--rounds`` runs (interleaved).
Goal (issue 2): quarry >= 60% of the ceiling's requests per second, warm cache.

    .venv/bin/python bench/read_bench.py [--duration 10] [--connections 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _workspace_gen import generate_workspace, workflow_name  # noqa: E402

WORKSPACE = "bench"


# -- the ceiling: a bare ASGI app, started by this file with --bare-server ---------
def bare_server(args: argparse.Namespace) -> None:
    import uvicorn

    from quarry.core.logs import configure_logging
    from quarry.core.settings import load_settings

    body = Path(args.body_file).read_bytes()
    etag = args.etag.encode()
    common = [
        (b"etag", etag),
        (b"x-quarry-revision", args.revision.encode()),
        (b"cache-control", b"no-cache"),
    ]
    ok_start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [
            *common,
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
        ],
    }
    not_modified = {"type": "http.response.start", "status": 304, "headers": common}
    ok_body = {"type": "http.response.body", "body": body}
    empty_body = {"type": "http.response.body", "body": b""}

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        for name, value in scope["headers"]:
            if name == b"if-none-match" and value == etag:
                await send(not_modified)
                await send(empty_body)
                return
        await send(ok_start)
        await send(ok_body)

    settings = load_settings()  # the same logging set-up as `quarry serve`
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_config=None)


# -- parent -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cmd: list[str], core: str | None) -> list[str]:
    if core is not None and shutil.which("taskset"):
        return ["taskset", "-c", core, *cmd]
    return cmd


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}; see its log")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    sys.exit(f"server at {url} not ready after {timeout}s")


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:  # 304 lands here
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(url: str, args: argparse.Namespace, duration: int, header: str | None) -> dict:
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{duration}s", "--latency"]
    if header:
        cmd += ["-H", header]
    out = subprocess.run(
        pinned([*cmd, url], args.client_core), capture_output=True, text=True, check=True
    ).stdout
    if "Non-2xx or 3xx" in out or "Socket errors" in out:
        sys.exit(f"wrk saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "p50": p50, "p99": p99}


def main() -> None:
    parser = argparse.ArgumentParser(description="Quarry read benchmark")
    parser.add_argument("--size", type=int, default=1000, help="definitions in the workspace")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per server")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs per row (median)")
    parser.add_argument("--server-core", default="0", help="taskset core(s) for both servers")
    parser.add_argument("--client-core", default="1", help="taskset core(s) for wrk")
    parser.add_argument("--no-304", action="store_true", help="skip the If-None-Match rows")
    parser.add_argument(
        "--log-level",
        help="QUARRY_LOG_LEVEL for both servers (WARNING silences "
        "uvicorn's per-request access log; default: Quarry's default, INFO)",
    )
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="extra argument for `quarry serve` (repeatable), e.g. --serve-arg=--no-workers",
    )
    parser.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--body-file", help=argparse.SUPPRESS)
    parser.add_argument("--etag", help=argparse.SUPPRESS)
    parser.add_argument("--revision", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        bare_server(args)
        return
    if not shutil.which("wrk"):
        sys.exit("wrk not found (apt-get install -y wrk)")
    if os.cpu_count() == 1:
        args.server_core = args.client_core = None

    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="quarry-read-bench-") as tmp:
        work = Path(tmp)
        root = work / WORKSPACE
        generate_workspace(root, args.size)
        env = {**os.environ, "QUARRY_DATA_DIR": str(work / "data")}
        if args.log_level:
            env["QUARRY_LOG_LEVEL"] = args.log_level
        # server logs (uvicorn's access log included); closed in the finally below
        logs = {name: open(work / f"{name}.log", "wb") for name in ("quarry", "bare")}  # noqa: SIM115
        try:
            port_q = free_port()
            quarry_bin = str(Path(sys.executable).with_name("quarry"))
            cmd = [quarry_bin, "serve", str(root), "--port", str(port_q), "--name", WORKSPACE]
            cmd += args.serve_arg
            procs.append(
                subprocess.Popen(
                    pinned(cmd, args.server_core),
                    env=env,
                    stdout=logs["quarry"],
                    stderr=subprocess.STDOUT,
                )
            )
            url_q = (
                f"http://127.0.0.1:{port_q}/api/v1/workspaces/{WORKSPACE}"
                f"/definitions/workflow/{workflow_name(args.size // 4)}"
            )
            wait_ready(url_q, procs[0])
            status, headers, body = fetch(url_q)
            assert status == 200, status
            etag, revision = headers["etag"], headers["x-quarry-revision"]
            (work / "body.json").write_bytes(body)

            port_b = free_port()
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--bare-server",
                "--port",
                str(port_b),
                "--body-file",
                str(work / "body.json"),
                "--etag",
                etag,
                "--revision",
                revision,
            ]
            procs.append(
                subprocess.Popen(
                    pinned(cmd, args.server_core),
                    env=env,
                    stdout=logs["bare"],
                    stderr=subprocess.STDOUT,
                )
            )
            url_b = f"http://127.0.0.1:{port_b}/api/v1/workspaces/{WORKSPACE}/definitions/x"
            wait_ready(url_b, procs[1])
            _, _, bare_body = fetch(url_b)
            assert bare_body == body
            for url in (url_q, url_b):  # both answer 304 to the ETag
                assert fetch(url, {"If-None-Match": etag})[0] == 304, url

            print(
                f"definition: {len(body)} bytes, ETag {etag}; workspace of "
                f"{args.size} definitions; wrk -t{args.threads} -c{args.connections} "
                f"-d{args.duration}s (core {args.client_core}); servers on core "
                f"{args.server_core}; log level {args.log_level or 'default (INFO)'}; "
                f"quarry serve {' '.join(args.serve_arg) or '(no extra arguments)'}",
                file=sys.stderr,
            )
            for url in (url_q, url_b):  # warm up: cache filled, code paths hot
                run_wrk(url, args, args.warmup, None)
                run_wrk(url, args, 1, f"If-None-Match: {etag}")

            cases = [("200", None)] + ([] if args.no_304 else [("304", f"If-None-Match: {etag}")])
            results: dict[tuple[str, str], list[dict]] = {}
            for rnd in range(args.rounds):
                for label, header in cases:
                    for server, url in (("quarry", url_q), ("bare ASGI", url_b)):
                        r = run_wrk(url, args, args.duration, header)
                        results.setdefault((label, server), []).append(r)
                        print(
                            f"  round {rnd + 1} {label} {server}: {r['rps']:.0f} rps",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            for p in procs:
                p.send_signal(signal.SIGINT)
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
            for f in logs.values():
                f.close()

    def med(label: str, server: str, key: str) -> float:
        return statistics.median(r[key] for r in results[(label, server)])

    head = f"{'response':<10}{'server':<11}{'rps':>9}{'p50 ms':>9}{'p99 ms':>9}{'% of ceiling':>14}"
    print(head)
    print("-" * len(head))
    for label, _ in cases:
        ceiling = med(label, "bare ASGI", "rps")
        for server in ("quarry", "bare ASGI"):
            rps = med(label, server, "rps")
            print(
                f"{label:<10}{server:<11}{rps:>9.0f}{med(label, server, 'p50'):>9.2f}"
                f"{med(label, server, 'p99'):>9.2f}{rps / ceiling:>13.0%}"
            )

    def paired(label: str) -> list[float]:
        """quarry / ceiling within each round: robust to a noisy machine drifting."""
        pairs = zip(results[(label, "quarry")], results[(label, "bare ASGI")], strict=True)
        return [q["rps"] / b["rps"] for q, b in pairs]

    print()
    print(
        f"medians of {args.rounds} runs; raw rps: "
        + "; ".join(
            f"{lbl} {srv}: {[round(r['rps']) for r in rs]}" for (lbl, srv), rs in results.items()
        )
    )
    for label, _ in cases:
        ratios = paired(label)
        print(
            f"{label}: quarry/ceiling per round {[f'{x:.0%}' for x in ratios]}, "
            f"median {statistics.median(ratios):.0%}"
        )
    ratio = statistics.median(paired("200"))
    print(
        f"goal (GET one definition >= 60% of the bare ASGI ceiling, warm; median of the "
        f"per-round ratios): {ratio:.0%} -> {'MET' if ratio >= 0.60 else 'NOT MET'}"
    )


if __name__ == "__main__":
    main()
