"""``/metrics`` on the API and on a real ``quarry worker`` process: the text parses
with the Prometheus client's own parser, queue depth moves when runs are queued and
drained, the run histogram counts what the worker finished; and the request id a
caller sent is echoed, stored on the run, and in the worker's JSON log for that run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from quarry.api.app import create_app
from quarry.core.settings import Settings
from quarry.demo import create_demo_workspace
from quarry.factory.local import compile_local
from quarry.node.services import Services, build_services
from quarry.store import runs as runq
from tests.support.processes import quarry_process, serve_in_thread, wait_until
from tests.support.tenancy import WORKFLOW, s3_url

pytestmark = pytest.mark.slow


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    got = httpx.get(f"{url}/metrics", timeout=10)
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/plain")
    return samples(got.text)


def queued(m: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return m.get(("quarry_queue_tasks", (("state", "queued"), ("tenant", "local"))), 0.0)


@pytest.fixture
def api(
    request: pytest.FixtureRequest,
    pg_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[str, Services, dict[str, str]]]:
    blob_url = s3_url(request, monkeypatch)
    settings = Settings(
        database_url=pg_database,
        blob_url=blob_url,
        data_dir=tmp_path / "data",
        inprocess_workers="off",
        global_driver="off",
        metrics_cache_seconds=0,
    )
    svc = build_services(settings)
    root = create_demo_workspace(tmp_path / "shop")
    compile_local(svc.engine, svc.store, "local", root, "shop", data_dir=tmp_path / "data")
    env = {
        "QUARRY_DATABASE_URL": pg_database,
        "QUARRY_BLOB_URL": blob_url,
        "QUARRY_DATA_DIR": str(tmp_path / "worker"),
        "QUARRY_METRICS_CACHE_SECONDS": "0",
        "QUARRY_LOG_FORMAT": "json",
    }
    with serve_in_thread(create_app(svc)) as url:
        yield url, svc, env
    svc.close()


def test_metrics_move_and_the_request_id_reaches_the_worker_log(
    api: tuple[str, Services, dict[str, str]], tmp_path: Path
) -> None:
    url, svc, env = api
    before = scrape(url)
    assert queued(before) == 0
    assert ("quarry_http_requests_in_flight", (("class", "cheap"),)) in before

    ids = {}
    for i in range(3):
        rid = f"req-{i}-abc"
        got = httpx.post(
            f"{url}/api/v1/workspaces/shop/runs",
            json={"name": WORKFLOW},
            headers={"X-Request-Id": rid},
            timeout=30,
        )
        assert got.status_code == 202 and got.headers["x-request-id"] == rid
        ids[got.json()["id"]] = rid
    generated = httpx.get(f"{url}/api/v1/workspaces", timeout=10).headers["x-request-id"]
    assert len(generated) == 32
    unsafe = httpx.get(f"{url}/healthz", headers={"X-Request-Id": "a b\tc"}, timeout=10)
    assert unsafe.headers["x-request-id"] != "a b\tc"

    loaded = scrape(url)
    assert queued(loaded) == 3
    assert loaded[("quarry_queue_active_tasks", ())] == 3
    assert loaded[("quarry_queue_oldest_queued_age_seconds", ())] > 0
    with svc.engine.connect() as conn:
        assert {runq.get_run(conn, "local", i).request_id for i in ids} == set(ids.values())

    log = tmp_path / "worker.log"
    with quarry_process(["worker"], env, log) as worker:

        def drained() -> bool:
            with svc.engine.connect() as conn:
                return all(runq.get_run(conn, "local", i).state == "succeeded" for i in ids)

        wait_until(drained, 120, "the worker to run everything")
        on_worker = scrape(worker.url)
        finished = (
            "quarry_run_duration_seconds_count",
            (("kind", "workflow"), ("state", "succeeded")),
        )
        assert on_worker[finished] == 3
        assert on_worker[("quarry_queue_active_tasks", ())] == 0
        health = httpx.get(f"{worker.url}/healthz", timeout=10).json()
        assert health["role"] == "worker"
        assert httpx.get(f"{worker.url}/readyz", timeout=10).json()["ready"] is True
    assert queued(scrape(url)) == 0

    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    for run_id, rid in ids.items():
        mine = [r for r in records if r.get("run_id") == run_id]
        assert mine and all(r["request_id"] == rid for r in mine), mine


def test_json_logs_carry_the_request_id_of_the_request(tmp_path: Path) -> None:
    """Every record logged while a request is served names it (here: a 500's log)."""
    code = (
        "import logging\n"
        "from quarry.core.logs import configure_logging, request_context\n"
        "configure_logging('INFO', 'json')\n"
        "with request_context('abc-123'):\n"
        "    logging.getLogger('x').info('inside')\n"
        "logging.getLogger('x').info('outside')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    inside, outside = (json.loads(line) for line in out.stderr.splitlines())
    assert inside["request_id"] == "abc-123" and inside["msg"] == "inside"
    assert outside["request_id"] is None
