"""The raw ASGI fast path of ``POST .../semantic/query`` answers exactly as the
FastAPI route does (which still answers the query strings the fast path leaves to
it), and really is the one answering."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from quarry.api.deps import PRINCIPAL_KEY, local_principal
from quarry.api.fleet.semantic import SemanticQueryFastPath, _answer_off_loop, fast_params
from tests.integration.api.semantic.conftest import Shop
from tests.integration.api.semantic.shop import REVENUE_BY_REGION_FOR_STATUS, hand_written, same

QUERY = "/api/v1/workspaces/shop/semantic/query"
BY_REGION = {
    "topic": "sales",
    "measures": ["orders.revenue"],
    "dimensions": ["customers.region"],
    "filters": [{"field": "orders.status", "op": "eq", "value": "returned"}],
    "orders": [{"field": "customers.region", "direction": "asc"}],
}
# Headers whose value is the answer's, not the moment's.
COMPARED = ("content-type", "content-length", "etag", "x-quarry-revision", "x-quarry-truncated")


@pytest.mark.parametrize(
    ("query", "taken"),
    [
        (b"", (None, False, None)),
        (b"sql_only=1", (None, True, None)),
        (b"sql_only=TRUE&format=csv", (None, True, "csv")),
        (b"sql_only=off", (None, False, None)),
        (b"revision=0123abcd", ("0123abcd", False, None)),
        (b"format=xlsx", (None, False, "xlsx")),  # the route's own 400, same function
        (b"revision=XYZ", None),  # FastAPI's validation error
        (b"revision=", None),
        (b"sql_only=maybe", None),
        (b"sql_only=t", None),  # FastAPI takes it; left to FastAPI
        (b"format=csv&format=json", None),
        (b"via=route", None),
    ],
)
def test_fast_params_take_only_what_the_route_would_take_alike(
    query: bytes, taken: tuple[str | None, bool, str | None] | None
) -> None:
    assert fast_params(query) == taken


def _same_answer(fast: httpx.Response, route: httpx.Response) -> None:
    assert fast.status_code == route.status_code, (fast.text, route.text)
    assert fast.content == route.content
    for name in COMPARED:
        assert fast.headers.get(name) == route.headers.get(name), name


@pytest.mark.backend_agnostic
def test_fast_path_and_route_answer_alike(shop: Shop) -> None:
    """Each request is asked plainly (fast path) and with a parameter the fast path
    does not take (``via=route``: the FastAPI route, which ignores it)."""
    bad_member = {"topic": "sales", "measures": ["orders.nope"]}
    other_ws = "/api/v1/workspaces/not_here/semantic/query"
    with shop.client() as client:
        # a miss through the route, then the same question through the fast path: a
        # hit of the answer the route computed, byte for byte
        route = client.post(QUERY, json=BY_REGION, params={"via": "route"})
        fast = client.post(QUERY, json=BY_REGION)
        assert route.headers["x-quarry-cache"] == "miss" and fast.headers["x-quarry-cache"] == "hit"
        _same_answer(fast, route)
        rows = [tuple(r[c] for c in fast.json()["columns"]) for r in fast.json()["rows"]]
        assert same(rows, hand_written(shop.root, REVENUE_BY_REGION_FOR_STATUS, "returned"))
        cases: list[tuple[str, dict[str, Any]]] = [
            (QUERY, {"json": BY_REGION, "headers": {"Accept": "text/csv"}}),
            (QUERY, {"json": BY_REGION, "params": {"format": "arrow"}}),
            (QUERY, {"json": BY_REGION, "params": {"sql_only": "1"}}),
            (QUERY, {"json": BY_REGION, "params": {"revision": shop.revision_id}}),
            (QUERY, {"json": BY_REGION, "headers": {"If-None-Match": fast.headers["etag"]}}),
            (QUERY, {"json": bad_member}),
            (QUERY, {"json": bad_member, "params": {"sql_only": "1"}}),
            (QUERY, {"content": b"{not json"}),
            (QUERY, {"json": BY_REGION, "params": {"format": "xlsx"}}),
            (QUERY, {"json": BY_REGION, "params": {"revision": "0123abcd"}}),
            (QUERY, {"json": {"saved_query": 3}}),
            (QUERY, {"json": {**BY_REGION, "dimensions": ["customers.region"] * 20_000}}),
            (other_ws, {"json": BY_REGION}),
        ]
        statuses = []
        for path, kwargs in cases:
            params = kwargs.pop("params", {})
            fast = client.post(path, params=params, **kwargs)
            route = client.post(path, params={**params, "via": "route"}, **kwargs)
            _same_answer(fast, route)
            statuses.append(fast.status_code)
    assert statuses == [200, 200, 200, 200, 304, 400, 400, 400, 400, 404, 400, 413, 404]


@pytest.mark.backend_agnostic
def test_the_fast_path_answers_without_the_application(shop: Shop) -> None:
    """Called directly in front of a stand-in for the rest of the application: the
    query is answered without reaching it; what the fast path does not take (no
    principal, a parameter it leaves to the route, another method or path) does."""
    reached: list[str] = []

    async def rest(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(f"{scope['method']} {scope['path']}?{scope['query_string'].decode()}")
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    fast_path = SemanticQueryFastPath(rest)
    principal = local_principal("local")

    async def admitted(scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = shop.app  # as Starlette sets it, for the services
        if scope["path"] != "/anonymous":
            scope[PRINCIPAL_KEY] = principal
        else:
            scope["path"] = QUERY
        await fast_path(scope, receive, send)

    async def ask() -> list[int]:
        transport = httpx.ASGITransport(app=admitted)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            got = [
                await client.post(QUERY, json=BY_REGION),
                await client.post(QUERY, json={"topic": "sales", "measures": ["orders.nope"]}),
                await client.post(QUERY, json=BY_REGION, params={"via": "route"}),
                await client.post("/anonymous", json=BY_REGION),
                await client.get(QUERY),
            ]
        return [r.status_code for r in got]

    assert asyncio.run(ask()) == [200, 400, 299, 299, 299]
    assert reached == [f"POST {QUERY}?via=route", f"POST {QUERY}?", f"GET {QUERY}?"]


def test_an_answer_whose_request_was_cancelled_is_still_published() -> None:
    """The warehouse call goes on on its thread when the request is cancelled; what
    it computes reaches the shared store, as the response would have sent it."""
    release = threading.Event()
    published: list[tuple[str, Any]] = []

    class Results:
        def publish(self, key: str, result: Any) -> None:
            published.append((key, result))

    class Service:
        threads = ThreadPoolExecutor(1)
        results = Results()

    def answer() -> tuple[Any, bool, str, bytes]:
        release.wait(30)
        return "the result", False, "the key", b"{}"

    async def cancel_while_running() -> None:
        service: Any = Service()  # the two parts of a SemanticService it uses
        task = asyncio.ensure_future(_answer_off_loop(service, answer))
        await asyncio.sleep(0)  # submitted
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(cancel_while_running())
        assert published == []
        release.set()
        Service.threads.shutdown(wait=True)  # the answer finished, callbacks ran
        assert published == [("the key", "the result")]
    finally:
        release.set()
        Service.threads.shutdown(wait=True)
