"""Tenant acme floods while tenant globex sends at a modest rate: acme holds at most its
share of the expensive ceiling (the rest of its flood is refused at once), and every
one of globex's requests is admitted — up to its own full share at the same time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.fleet.admission.conftest import async_client, post_runs, tenant_row_locked
from tests.support.tenancy import (
    ACME,
    ACME_WS,
    GLOBEX,
    GLOBEX_WS,
    WORKFLOW,
    Deployment,
    postgres_settings,
    s3_url,
    two_tenants,
)

CEILING, SHARE = 20, 0.5
PER_TENANT = 10


@pytest.fixture
def deployment(
    request: pytest.FixtureRequest,
    pg_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Deployment]:
    settings = postgres_settings(
        pg_database,
        s3_url(request, monkeypatch),
        tmp_path,
        admission_expensive_max=CEILING,
        admission_tenant_share=SHARE,
        global_driver="off",
    )
    with two_tenants(settings, tmp_path) as dep:
        yield dep


def test_a_flooding_tenant_leaves_the_others_their_share(
    deployment: Deployment, pg_database: str
) -> None:
    dep = deployment
    admission = dep.app.state.admission
    acme_runs = f"/api/v1/workspaces/{ACME_WS}/runs"
    globex_runs = f"/api/v1/workspaces/{GLOBEX_WS}/runs"

    async def scenario() -> None:
        async with (
            async_client(dep.url, 100, dep.tokens[f"{ACME}:editor"]) as acme,
            async_client(dep.url, 20, dep.tokens[f"{GLOBEX}:editor"]) as globex,
        ):
            with tenant_row_locked(pg_database, ACME) as lock:
                first = post_runs(acme, acme_runs, 60)
                deadline = time.monotonic() + 60
                while sum(t.done() for t in first) < 60 - PER_TENANT:
                    assert time.monotonic() < deadline, "acme's refusals did not arrive"
                    await asyncio.sleep(0.02)
                assert admission.in_flight("expensive", ACME) == PER_TENANT
                refused = [t.result()[1] for t in first if t.done()]
                assert {r.status_code for r in refused} == {503}
                assert {r.json()["details"]["reason"] for r in refused} == {"expensive_tenant"}

                # acme keeps flooding while globex sends one request every 50 ms
                stop = asyncio.Event()

                async def keep_flooding() -> list[int]:
                    codes = []
                    while not stop.is_set():
                        batch = post_runs(acme, acme_runs, 20)
                        codes += [got.status_code for _, got in await asyncio.gather(*batch)]
                    return codes

                flood = asyncio.create_task(keep_flooding())
                modest: list[httpx.Response] = []
                for _ in range(20):
                    modest.append(await globex.post(globex_runs, json={"name": WORKFLOW}))
                    await asyncio.sleep(0.05)
                # and its whole share at once, still beside acme's held share
                whole_share = post_runs(globex, globex_runs, PER_TENANT)
                burst = [got for _, got in await asyncio.gather(*whole_share)]
                stop.set()
                flood_codes = await flood
                assert admission.in_flight("expensive", ACME) == PER_TENANT
                # the requests held behind the lock, taken before it is let go (once it
                # is, they finish at any moment: taken after, some were missed)
                waiting = [t for t in first if not t.done()]
                await asyncio.to_thread(lock.rollback)
                held = [got for _, got in await asyncio.gather(*waiting)]
        assert [r.status_code for r in modest] == [202] * 20, [r.text for r in modest][:3]
        assert [r.status_code for r in burst] == [202] * PER_TENANT
        assert flood_codes and set(flood_codes) == {503}
        assert [r.status_code for r in held] == [202] * PER_TENANT

    asyncio.run(scenario())
