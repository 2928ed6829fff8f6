"""Request limits over real sockets: refused with 413 and the limit named, before the
body is read, and nothing is stored.

The big bodies are sent by hand on a raw socket: the test sends the head and a first
piece of the body, then waits for the answer. A server that read the body before
answering would wait for the rest and never answer: the test would time out.
"""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func
from sqlalchemy import select as sql_select

from quarry.api.app import create_app
from quarry.demo import create_demo_workspace
from quarry.factory.local import compile_local
from quarry.node.services import Services, build_services
from quarry.store.queue_tables import tasks
from tests.conftest import Backend
from tests.support.processes import serve_in_thread

WS = "/api/v1/workspaces/shop"
RUN = {"name": "workflows/monthly_revenue"}

pytestmark = pytest.mark.backend_agnostic  # limits are checked before any storage


@pytest.fixture
def api(backend: Backend, tmp_path: Path) -> Iterator[tuple[str, Services]]:
    svc = build_services(
        backend.settings(data_dir=tmp_path / "data", revision_cache_ttl=0, inprocess_workers="off")
    )
    root = create_demo_workspace(tmp_path / "shop")
    compile_local(svc.engine, svc.store, "local", root, "shop")
    with serve_in_thread(create_app(svc)) as url:
        yield url, svc
    svc.close()


def _queued(svc: Services) -> int:
    with svc.engine.connect() as conn:
        return int(conn.execute(sql_select(func.count()).select_from(tasks)).scalar_one())


def _exchange(url: str, head: bytes, pieces: Iterator[bytes]) -> tuple[int, dict[str, object]]:
    """Send ``head``, then body pieces until the server answers; the parsed answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        sock.sendall(head)
        received = b""
        for piece in pieces:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, "the server closed without answering"
            received += chunk
        head_raw, _, body = received.partition(b"\r\n\r\n")
        lines = head_raw.decode().split("\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(v)
            for k, v in (line.split(": ", 1) for line in lines[1:])
            if k.lower() == "content-length"
        )
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, "the server closed mid-answer"
            body += chunk
        return status, json.loads(body[:length])


def _post_head(path: str, extra: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{extra}\r\n"
    ).encode()


def test_a_100_mb_run_body_is_refused_before_it_is_read(api: tuple[str, Services]) -> None:
    url, svc = api
    declared = 100_000_000
    prefix = b'{"name": "workflows/monthly_revenue", "variables": {"x": "'
    pieces = iter([prefix] + [b"a" * 65536] * 4)  # 256 KiB of the 100 MB, then wait
    status, error = _exchange(
        url, _post_head(f"{WS}/runs", f"Content-Length: {declared}\r\n"), pieces
    )
    assert status == 413
    assert error["error"] == "payload_too_large"
    assert error["limit"] == "request_max_body_bytes" and error["max"] == 1_048_576
    assert "request_max_body_bytes" in str(error["message"])
    assert _queued(svc) == 0


def test_a_streamed_body_is_counted_while_it_arrives(api: tuple[str, Services]) -> None:
    """Chunked transfer declares no length: refused once the count passes the cap."""
    url, svc = api

    def chunks() -> Iterator[bytes]:
        yield b"10000\r\n" + b" " * 0x10000 + b"\r\n"  # JSON whitespace, 64 KiB a chunk
        for _ in range(400):  # 25 MiB if it were all read
            yield b"10000\r\n" + b" " * 0x10000 + b"\r\n"

    status, error = _exchange(
        url, _post_head(f"{WS}/runs", "Transfer-Encoding: chunked\r\n"), chunks()
    )
    assert status == 413 and error["limit"] == "request_max_body_bytes"
    assert _queued(svc) == 0


def test_too_many_run_variables(api: tuple[str, Services]) -> None:
    url, svc = api
    with httpx.Client(base_url=url, timeout=20) as client:
        many = {f"v{i}": i for i in range(101)}
        refused = client.post(f"{WS}/runs", json={**RUN, "variables": many})
        assert refused.status_code == 413, refused.text
        assert refused.json()["limit"] == "run_max_variables"
        assert refused.json()["max"] == 100
        draft = client.post(f"{WS}/draft-runs", json={**RUN, "variables": many})
        assert draft.status_code == 413 and draft.json()["limit"] == "run_max_variables"
        assert _queued(svc) == 0
        fine = client.post(f"{WS}/runs", json={**RUN, "variables": {"v1": 1}})
        assert fine.status_code == 202, fine.text


def test_a_big_run_variable_under_the_body_cap(api: tuple[str, Services]) -> None:
    url, svc = api
    with httpx.Client(base_url=url, timeout=20) as client:
        big = {"region": "x" * 100_000}  # 100 KB: under the body cap, over the variable cap
        refused = client.post(f"{WS}/runs", json={**RUN, "variables": big})
        assert refused.status_code == 413, refused.text
        assert refused.json()["limit"] == "run_variable_max_bytes"
        assert "'region'" in refused.json()["message"]
        assert _queued(svc) == 0


def test_big_control_values_in_the_query(api: tuple[str, Services]) -> None:
    url, _svc = api
    with httpx.Client(base_url=url, timeout=20) as client:
        path = f"{WS}/apps/apps/sales_overview/data"
        refused = client.get(path, params={"region": "x" * 20_000})
        assert refused.status_code == 413, refused.text
        assert refused.json()["limit"] == "request_max_query_bytes"
        fine = client.get(path, params={"region": "North"})  # no stored result yet
        assert fine.status_code == 404 and fine.json()["details"]["run_needed"], fine.text


def test_limits_are_settings(backend: Backend, tmp_path: Path) -> None:
    svc = build_services(
        backend.settings(
            data_dir=tmp_path / "data",
            inprocess_workers="off",
            request_max_body_bytes=1000,
            run_max_variables=2,
        )
    )
    root = create_demo_workspace(tmp_path / "shop")
    compile_local(svc.engine, svc.store, "local", root, "shop")
    try:
        with serve_in_thread(create_app(svc)) as url, httpx.Client(base_url=url) as client:
            body = client.post(f"{WS}/runs", json={**RUN, "variables": {"a": "x" * 2000}})
            assert body.status_code == 413 and body.json()["max"] == 1000
            three = client.post(f"{WS}/runs", json={**RUN, "variables": {"a": 1, "b": 2, "c": 3}})
            assert three.status_code == 413 and three.json()["max"] == 2
            two = client.post(f"{WS}/runs", json={**RUN, "variables": {"a": 1, "b": 2}})
            assert two.status_code == 202, two.text
    finally:
        svc.close()


def test_a_streamed_file_write_is_counted_against_the_file_cap(
    backend: Backend, tmp_path: Path
) -> None:
    """The route reads the body itself: the middleware's count refuses it mid-stream,
    whatever the route would have answered, and the file is not written."""
    svc = build_services(
        backend.settings(
            data_dir=tmp_path / "data", inprocess_workers="off", dataset_file_max_bytes=3000
        )
    )
    root = create_demo_workspace(tmp_path / "shop")
    compile_local(svc.engine, svc.store, "local", root, "shop")
    cap = 3000 * 4 // 3 + 65536
    try:
        with serve_in_thread(create_app(svc)) as url:

            def chunks() -> Iterator[bytes]:
                yield b'4000\r\n{"content": "' + b"a" * (0x4000 - 13) + b"\r\n"
                for _ in range(60):  # 960 KiB if it were all read
                    yield b"4000\r\n" + b"a" * 0x4000 + b"\r\n"

            head = (
                f"PUT {WS}/files/notes/streamed.md HTTP/1.1\r\nHost: test\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode()
            status, error = _exchange(url, head, chunks())
            assert status == 413, error
            assert error["limit"] == "dataset_file_max_bytes" and error["max"] == cap
            declared = (
                f"PUT {WS}/files/notes/declared.md HTTP/1.1\r\nHost: test\r\n"
                f"Content-Type: application/json\r\nContent-Length: {cap + 1}\r\n\r\n"
            ).encode()
            status, error = _exchange(url, declared, iter([b"{"]))
            assert status == 413 and error["limit"] == "dataset_file_max_bytes"
        assert not (root / "notes" / "streamed.md").exists()
        assert not (root / "notes" / "declared.md").exists()
    finally:
        svc.close()
