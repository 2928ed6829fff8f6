"""Following a run's events over SSE from the client's side: the push test and the
latency benchmark (``bench/run_events_latency.py``) measure the same thing, the time
from a run's end to its terminal event reaching a follower."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

TERMINAL_LINES = ("event: run.succeeded", "event: run.failed")


def report_delay(exec_client: httpx.Client, follow_client: httpx.Client, workspace: str) -> float:
    """Create a run of the demo's ``workflows/monthly_revenue`` on ``exec_client`` (the
    workspace's API prefix is ``workspace``), follow its events on ``follow_client``,
    and return the seconds between the run's ``finished_at`` (the executing clock, on
    the same machine) and its terminal event line arriving; the run must succeed."""
    run = exec_client.post(f"{workspace}/runs", json={"name": "workflows/monthly_revenue"}).json()
    received: datetime | None = None
    with follow_client.stream("GET", f"/api/v1/runs/{run['id']}/events") as stream:
        for line in stream.iter_lines():
            if line in TERMINAL_LINES:
                received = datetime.now(UTC)
                break
    assert received is not None, "the stream ended without a terminal event"
    finished = follow_client.get(f"/api/v1/runs/{run['id']}").json()
    assert finished["state"] == "succeeded", finished
    finished_at = datetime.fromisoformat(finished["finished_at"])
    if finished_at.tzinfo is None:
        finished_at = finished_at.replace(tzinfo=UTC)
    return (received - finished_at).total_seconds()
