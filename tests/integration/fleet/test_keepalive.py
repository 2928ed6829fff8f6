"""GET /keepalive and the self keep-alive loop, over real sockets against the real
application (SQLite + a local folder; the route reads no state)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from quarry.api.app import create_app
from quarry.core.settings import Settings
from quarry.fleet.keepalive import SelfKeepAlive
from quarry.fleet.routes import RouteClass, classify
from quarry.node.services import Services, build_services
from tests.support.processes import serve_in_thread, wait_until


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Services, str]]:
    settings = Settings(
        data_dir=tmp_path / "data",
        keepalive_max_hold_seconds=2.0,
        inprocess_workers="off",
    ).with_local_defaults(None)
    svc = build_services(settings)
    with serve_in_thread(create_app(svc)) as url:
        yield svc, url
    svc.close()


def _get_in_thread(url: str, result: dict[str, Any]) -> threading.Thread:
    def go() -> None:
        response = httpx.get(url, timeout=30)
        result["status"] = response.status_code
        result["body"] = response.json()

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


def test_keepalive_is_fleet_ok_and_answers_at_once_without_holds(
    served: tuple[Services, str],
) -> None:
    _svc, url = served
    assert classify("GET", "/keepalive") is RouteClass.FLEET_OK
    response = httpx.get(f"{url}/keepalive", params={"hold": 30}, timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["holds"] == 0 and body["held_seconds"] < 2


def test_keepalive_holds_until_the_last_hold_is_released(served: tuple[Services, str]) -> None:
    svc, url = served
    first = svc.holds.acquire("compile")
    second = svc.holds.acquire("run")
    result: dict[str, Any] = {}
    thread = _get_in_thread(f"{url}/keepalive?hold=4", result)
    wait_until(lambda: svc.holds.watchers == 1, 10, "the long-poll to be waiting")
    svc.holds.release(first)
    # One hold is left: the request stays open.
    assert thread.is_alive()
    svc.holds.release(second)
    thread.join(10)
    assert not thread.is_alive()
    assert result["status"] == 200
    assert result["body"]["holds"] == 0
    assert result["body"]["held_seconds"] < 4


def test_keepalive_hold_is_capped_and_validated(served: tuple[Services, str]) -> None:
    svc, url = served
    with svc.holds.hold("run"):
        response = httpx.get(f"{url}/keepalive", params={"hold": 3600}, timeout=30)
    body = response.json()
    assert response.status_code == 200
    assert body["hold_cap_seconds"] == 2.0
    assert 1.8 <= body["held_seconds"] < 6
    assert body["by_reason"] == {"run": 1}
    bad = httpx.get(f"{url}/keepalive", params={"hold": "soon"}, timeout=10)
    assert bad.status_code in {400, 422}
    assert "hold" in bad.text


def test_self_keepalive_overlaps_long_polls_while_held(served: tuple[Services, str]) -> None:
    svc, url = served
    loop = SelfKeepAlive(svc.holds, url, hold_seconds=1.5, renew_before=0.75)
    loop.start()
    try:
        assert loop.stats.issued == 0  # dormant while nothing is held
        token = svc.holds.acquire("drain")
        # Renewed before expiry: the next poll starts while the previous is open.
        wait_until(lambda: loop.stats.issued >= 3, 15, "three long-polls")
        wait_until(lambda: loop.stats.in_flight == 2, 15, "two overlapping long-polls")
        svc.holds.release(token)
        wait_until(lambda: loop.stats.in_flight == 0, 5, "the long-polls to end on idle")
        assert loop.stats.failed == 0
    finally:
        loop.stop()
