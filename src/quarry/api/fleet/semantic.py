"""The semantic query API: a topic's measures by dimensions, as rows or as SQL.

FleetOk: answered by any replica from the database (views and topics of the
revision), the object store (the revision's data files and the shared result cache)
and the warehouse named in ``config.yml``. A query is compiled before anything
runs, so a bad one is a ``400`` naming the member and executes nothing. Answers are
cached per (revision, query, tenant, row-filter principal) for
``semantic_cache_ttl`` seconds with a strong ``ETag`` (``304`` on
``If-None-Match``). Querying only reads, so a viewer token may ``POST`` here
(``quarry.api.auth.READ_ONLY_POSTS``).

``POST .../semantic/query`` is answered by :class:`SemanticQueryFastPath`, a raw
ASGI layer inside authentication and admission, with the same function as the
FastAPI route (which stays for the OpenAPI document and for query strings the fast
path leaves to FastAPI's validation): on this route FastAPI's route matching and
parameter solving cost more than everything but the warehouse.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import hashlib
import inspect
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from quarry.api.deps import PRINCIPAL_KEY, Principal, principal, services
from quarry.core.errors import BadRequest, QuarryError
from quarry.core.metrics import SEMANTIC_QUERIES
from quarry.runtime.apps.values import json_value
from quarry.runtime.semantic.formats import MEDIA, choose_format, encode
from quarry.runtime.semantic.results import CachedResult
from quarry.runtime.semantic.service import SemanticService
from quarry.semantic import SemanticQuery
from quarry.store.workspaces import WorkspaceRow

router = APIRouter(prefix="/api/v1/workspaces", tags=["semantic"])

RevisionParam = Annotated[
    str | None,
    Query(pattern=r"^[0-9a-f]{8,64}$", description="Pin a stored revision."),
]
FormatParam = Annotated[
    str | None,
    Query(description="json, csv, arrow or parquet (default: from Accept, else json)."),
]


class PayloadTooLarge(QuarryError):
    status_code = 413
    code = "payload_too_large"


def semantic_service(request: Request) -> SemanticService:
    """One per application (made on first use): its model, connection and local
    result caches live as long as the process serves."""
    found = getattr(request.app.state, "semantic", None)
    if found is None:
        svc = services(request)
        found = SemanticService(
            svc.catalog,
            svc.store,
            cache_dir=svc.paths.cache_dir,
            ttl=svc.settings.semantic_cache_ttl,
            # as many as admission lets in at once (a query is an expensive request)
            threads=svc.settings.admission_expensive_max,
        )
        request.app.state.semantic = found
    assert isinstance(found, SemanticService)
    return found


def principal_attributes(who: Principal) -> dict[str, Any]:
    """What a topic's ``security.row_filters`` may name: the caller's tenant and the
    token's identity."""
    return {
        "tenant": who.tenant_id,
        "subject": who.subject,
        "name": who.name,
        "email": who.email,
        "role": who.role.name.lower(),
    }


async def _target(request: Request, workspace: str, pinned: str | None) -> tuple[WorkspaceRow, str]:
    catalog = services(request).catalog
    tenant = principal(request).tenant_id
    ws = catalog.peek_workspace(tenant, workspace)
    if ws is None:
        ws = await run_in_threadpool(catalog.workspace, tenant, workspace)
    rev = catalog.peek_revision(ws, pinned)
    if rev is None:
        rev = await run_in_threadpool(catalog.resolve, ws, pinned)
    return ws, rev


async def _raw_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"a semantic query body is limited to {limit} bytes", limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"a semantic query body is limited to {limit} bytes", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _parse(
    raw: bytes, sem: SemanticService, workspace: WorkspaceRow, revision: str
) -> SemanticQuery:
    """The posted query, or ``{"saved_query": name, "step": optional, "params":
    optional}``: a saved query (``*.query.yml``) of the revision with its
    parameters substituted, run like a posted one."""
    try:
        body = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}", parameter="body") from None
    if isinstance(body, dict) and "saved_query" in body:
        extra = sorted(set(body) - {"saved_query", "step", "params"})
        name, step, params = body["saved_query"], body.get("step"), body.get("params")
        if (
            extra
            or not isinstance(name, str)
            or not isinstance(step, (str, type(None)))
            or not isinstance(params, (dict, type(None)))
        ):
            raise BadRequest(
                'a saved query is asked as {"saved_query": name, "step": name, '
                '"params": {name: value}}' + (f"; unexpected: {', '.join(extra)}" if extra else ""),
                parameter="saved_query",
            )
        return await run_in_threadpool(sem.saved_query, workspace, revision, name, step, params)
    return SemanticQuery.from_request(body)


class _ThenPublish(Response):
    """A response that writes a just-computed answer to the shared store once it
    has been sent (or failed to send), so the write never delays it."""

    def __init__(self, publish: Callable[[], None], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._publish = publish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._publish()  # hands the write to the cache's writer thread


def _answer(
    request: Request,
    result: CachedResult,
    data: bytes,
    fmt: str,
    hit: bool,
    rev: str,
    ttl: float,
    publish: Callable[[], None] | None = None,
) -> Response:
    etag = result.etag(fmt)
    remaining = max(0, int(ttl - result.age(time.time())))
    headers = {
        "ETag": etag,
        "X-Quarry-Revision": rev,
        "X-Quarry-Cache": "hit" if hit else "miss",
        "Cache-Control": f"private, max-age={remaining}" if ttl > 0 else "no-store",
    }
    if result.truncated:
        headers["X-Quarry-Truncated"] = "true"
    if publish is not None:
        if request.headers.get("if-none-match") == etag:
            return _ThenPublish(publish, status_code=304, headers=headers)
        return _ThenPublish(publish, data, media_type=MEDIA[fmt], headers=headers)
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=MEDIA[fmt], headers=headers)


@router.get("/{workspace}/semantic/catalog")
async def semantic_catalog(
    request: Request, workspace: str, revision: RevisionParam = None
) -> Response:
    """Topics, views and their members (types, descriptions, synonyms, samples)."""
    ws, rev = await _target(request, workspace, revision)
    sem = semantic_service(request)
    doc = await run_in_threadpool(sem.models.catalog_document, ws, rev)
    headers = {"ETag": doc.etag, "X-Quarry-Revision": rev, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == doc.etag:
        return Response(status_code=304, headers=headers)
    return Response(doc.body, media_type=MEDIA["json"], headers=headers)


_QUERY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "A semantic query: Oxy's semantic_query task fields or "
                    "airlayer's QueryRequest (docs/semantic-layer.md).",
                    "properties": {
                        "topic": {"type": "string"},
                        "measures": {"type": "array", "items": {"type": "string"}},
                        "dimensions": {"type": "array", "items": {"type": "string"}},
                        "time_dimensions": {"type": "array", "items": {"type": "object"}},
                        "filters": {"type": "array", "items": {"type": "object"}},
                        "orders": {"type": "array", "items": {"type": "object"}},
                        "limit": {"type": "integer", "minimum": 0},
                        "offset": {"type": "integer", "minimum": 0},
                        "variables": {"type": "object"},
                    },
                },
                "example": {
                    "topic": "sales",
                    "measures": ["orders.revenue"],
                    "dimensions": ["customers.region"],
                    "time_dimensions": [{"dimension": "orders.order_date", "granularity": "month"}],
                    "filters": [{"field": "orders.status", "op": "eq", "value": "complete"}],
                    "limit": 100,
                },
            }
        },
    }
}


@router.post("/{workspace}/semantic/query", openapi_extra=_QUERY_BODY)
async def semantic_query(
    request: Request,
    workspace: str,
    revision: RevisionParam = None,
    sql_only: Annotated[bool, Query(description="Compile only: answer the SQL.")] = False,
    format: FormatParam = None,
) -> Response:
    """Body: a semantic query (``topic``, ``measures``, ``dimensions``,
    ``time_dimensions``, ``filters``, ``orders``, ``limit``, ``offset``; airlayer's
    JSON shape is accepted too), or ``{"saved_query": name, "step": name}`` for a
    saved query of the revision. Answers rows, or with ``?sql_only=1`` the SQL and
    its bound parameters."""
    return await answer_query(request, workspace, revision, sql_only, format)


async def answer_query(
    request: Request, workspace: str, revision: str | None, sql_only: bool, fmt_param: str | None
) -> Response:
    """The query route's answer, for the FastAPI route and the fast path alike."""
    svc = services(request)
    who = principal(request)
    ws, rev = await _target(request, workspace, revision)
    fmt = choose_format(fmt_param, request.headers.get("accept"))
    raw = await _raw_body(request, svc.settings.semantic_max_body)
    sem = semantic_service(request)
    attributes = principal_attributes(who)
    ttl = sem.results.ttl
    if sql_only:
        query = await _parse(raw, sem, ws, rev)
        prepared = await run_in_threadpool(sem.prepare, ws, rev, query, attributes)
        c = prepared.compiled
        document = {
            "revision_id": rev,
            "datasource": prepared.target.datasource,
            "dialect": prepared.target.dialect,
            "sql": prepared.bound.display(),
            "params": [json_value(p) for p in c.params],
            "columns": [asdict(col) for col in c.columns],
        }
        return Response(
            json.dumps(document).encode(),
            media_type=MEDIA["json"],
            headers={"X-Quarry-Revision": rev, "Cache-Control": "no-store"},
        )
    # A repeat of an earlier request, answered from this process's memory: no thread
    # hop, no parsing, no compiling, no encoding.
    request_key = (ws.id, rev, hashlib.sha256(raw).digest(), tuple(sorted(attributes.items())))
    known = sem.known_key(request_key)
    cached = sem.results.peek(known) if known is not None else None
    if cached is not None:
        SEMANTIC_QUERIES.labels("hit").inc()
        ready = cached.peek_encoded(fmt)
        if ready is None:
            ready = await run_in_threadpool(cached.encoded, fmt, encode)
        return _answer(request, cached, ready, fmt, True, rev, ttl)
    query = await _parse(raw, sem, ws, rev)

    def answer() -> tuple[CachedResult, bool, str, bytes]:
        result, hit, key = sem.answer(
            ws, rev, query, attributes, max_rows=svc.settings.semantic_max_rows, publish=False
        )
        try:
            return result, hit, key, result.encoded(fmt, encode)  # one thread hop, not two
        except BaseException:
            if not hit:
                sem.results.publish(key, result)
            raise

    result, hit, key, data = await _answer_off_loop(sem, answer)
    SEMANTIC_QUERIES.labels("hit" if hit else "miss").inc()
    sem.remember_key(request_key, key)
    # A computed answer goes to the shared store once this response is sent.
    publish = None if hit else (lambda: sem.results.publish(key, result))
    return _answer(request, result, data, fmt, hit, rev, ttl, publish)


async def _answer_off_loop(
    sem: SemanticService, answer: Callable[[], tuple[CachedResult, bool, str, bytes]]
) -> tuple[CachedResult, bool, str, bytes]:
    """``answer()`` on the semantic service's threads (one hop there and back; a
    plain executor hop costs about half of ``run_in_threadpool``'s). Should the
    request be cancelled while it runs, an answer it computes is still written to
    the shared store, as its response would have done."""
    context = contextvars.copy_context()  # the request id of the logs
    future = sem.threads.submit(context.run, answer)
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        future.add_done_callback(lambda done: _publish_abandoned(sem, done))
        raise


def _publish_abandoned(
    sem: SemanticService, done: concurrent.futures.Future[tuple[CachedResult, bool, str, bytes]]
) -> None:
    if done.cancelled() or done.exception() is not None:
        return
    result, hit, key, _data = done.result()
    if not hit:
        sem.results.publish(key, result)


# -- the fast path -------------------------------------------------------------------

_QUERY_ROUTE = re.compile(r"^/api/v1/workspaces/(?P<ws>[^/]+)/semantic/query$")
_REVISION = re.compile(r"^[0-9a-f]{8,64}$")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def fast_params(query_string: bytes) -> tuple[str | None, bool, str | None] | None:
    """(revision, sql_only, format) of a query string the FastAPI route would accept
    with these values; None for anything else (a bad or repeated parameter, an
    unknown one, an empty value), which the fast path leaves to the route, so its
    validation and errors stay FastAPI's."""
    if not query_string:
        return None, False, None
    seen: dict[str, str] = {}
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name in seen or not value or name not in ("revision", "sql_only", "format"):
            return None
        seen[name] = value
    revision = seen.get("revision")
    if revision is not None and not _REVISION.match(revision):
        return None
    flag = seen.get("sql_only", "0").lower()
    if flag not in _TRUE and flag not in _FALSE:
        return None
    return revision, flag in _TRUE, seen.get("format")


class SemanticQueryFastPath:
    """``POST /api/v1/workspaces/{ws}/semantic/query`` without FastAPI's routing and
    parameter solving: :func:`answer_query`, the route's own function, called
    directly. Installed inside authentication and admission (``quarry.api.app``),
    so it sees only admitted requests, with their principal; a request without
    one, or with a query string :func:`fast_params` does not take, goes on to the
    application and its route. An error is answered by the application's own
    exception handler for it, as the route's would be."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _QUERY_ROUTE.match(scope["path"])
            if match is not None and isinstance(scope.get(PRINCIPAL_KEY), Principal):
                params = fast_params(scope.get("query_string", b""))
                if params is not None:
                    await self._answer(scope, receive, send, match["ws"], *params)
                    return
        await self.app(scope, receive, send)

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        workspace: str,
        revision: str | None,
        sql_only: bool,
        fmt: str | None,
    ) -> None:
        request = Request(scope, receive)
        try:
            response = await answer_query(request, workspace, revision, sql_only, fmt)
        except Exception as exc:
            handler = _exception_handler(scope, exc)
            if handler is None:
                raise  # as from the route: the server's error middleware answers 500
            made = handler(request, exc)
            response = await made if inspect.isawaitable(made) else made
        await response(scope, receive, send)


def _exception_handler(scope: Scope, exc: Exception) -> Callable[..., Any] | None:
    """The handler the application registered for ``exc``'s class or its nearest
    base (``quarry.api.errors``), as Starlette looks it up."""
    handlers = getattr(scope.get("app"), "exception_handlers", {})
    for kind in type(exc).__mro__:
        found = handlers.get(kind)
        if found is not None:
            return found  # type: ignore[no-any-return]
    return None
