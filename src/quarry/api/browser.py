"""What a person in a browser sees when something goes wrong, and ``/docs`` offline.

Error pages: every error leaves the API as JSON (``quarry.api.errors``, the
authentication middleware, admission, request limits). A browser asking for a page
(``Accept`` naming ``text/html``) got that raw JSON, and a crash got a bare
"Internal Server Error" with nothing to quote. :class:`BrowserErrorPages` sits just
inside the request-id middleware and, only for clients that accept HTML, turns a
JSON error into a small page (404 with a link home, 401 with how to sign in, 500
with the request id to quote; a signed-out GET of a page goes to ``/sign-in``);
API clients (``Accept: application/json``, ``*/*`` or none) keep the JSON
unchanged. An unhandled exception becomes a 500 carrying the request id in both
forms, and is still re-raised so the server logs its traceback.

Offline docs: FastAPI's ``/docs`` loads Swagger UI from a CDN. :func:`install_offline_docs`
replaces that route with one loading the vendored copy under
``/static/vendor/swagger-ui/`` (version and licence in its README), and drops
``/redoc``, which would also need a CDN.
"""

from __future__ import annotations

import html
import json
import logging
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quarry.core.logs import REQUEST_ID

log = logging.getLogger(__name__)


SWAGGER_UI_VERSION = "5.35.0"
SWAGGER_UI_PATH = "/static/vendor/swagger-ui"

_TITLES = {
    400: "Bad request",
    401: "Sign in required",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    413: "Request too large",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Busy, try again shortly",
}

_SIGN_IN = (
    "This Quarry instance requires a token. Ask an admin for one "
    "(<code>quarry tokens create --tenant TENANT --role viewer</code>) and send it as "
    '<code>Authorization: Bearer qk_…</code>, or <a href="/sign-in">sign in</a> with it '
    "in this browser. A local instance is open only while it "
    "has no tokens: revoking them (<code>quarry tokens list</code>, "
    "<code>quarry tokens revoke</code>) opens it again."
)


def accepts_html(scope: Scope) -> bool:
    """Whether the client asked for a page: its ``Accept`` names ``text/html``."""
    for key, value in scope.get("headers", ()):
        if key == b"accept":
            return b"text/html" in bytes(value).lower()
    return False


def error_page(status: int, message: str, request_id: str | None) -> str:
    """A small self-contained HTML page (no scripts, no external assets)."""
    title = _TITLES.get(status, "Error" if status >= 500 else "Request refused")
    hint = ""
    if status == 401:
        hint = f"<p>{_SIGN_IN}</p>"
    elif status == 404:
        hint = '<p>The <a href="/">start page</a> lists what this instance serves.</p>'
    reference = (
        f"<p class=id>Request id <code>{html.escape(request_id)}</code>: quote it when "
        "asking for help; the server log has the same id.</p>"
        if request_id
        else ""
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{status} {html.escape(title)} · Quarry</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;"
        "padding:0 1rem;color:#222}h1{font-size:1.5rem}code{background:#f3f3f3;"
        "padding:0 .2rem}.id{color:#666;font-size:.9rem}</style></head><body>"
        f"<h1>{status} · {html.escape(title)}</h1><p>{html.escape(message)}</p>"
        f'{hint}{reference}<p><a href="/">Quarry home</a> · <a href="/docs">API docs</a></p>'
        "</body></html>"
    )


def _message_of(body: bytes) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:500]
    if isinstance(document, dict):
        message = document.get("message") or document.get("detail") or document.get("error")
        return str(message) if message else ""
    return ""


def signs_in(scope: Scope) -> bool:
    """A page (not an API or static path) answers a signed-out browser with the
    sign-in form instead of a 401 page."""
    path = str(scope.get("path", ""))
    return not path.startswith(("/api/", "/static/", "/metrics"))


async def send_sign_in_redirect(scope: Scope, send: Send) -> None:
    target = str(scope.get("path", "/"))
    query = scope.get("query_string", b"")
    if query:
        target += "?" + bytes(query).decode("latin-1")
    location = "/sign-in?" + urlencode({"next": target})
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", location.encode()), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


class BrowserErrorPages:
    """JSON errors become pages for browsers; unhandled errors become a 500 with the
    request id (JSON for API clients, a page for browsers)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wants_page = accepts_html(scope)
        started = False
        held: Message | None = None  # a JSON error's start, while its body arrives
        chunks: list[bytes] = []

        async def send_page(status: int, headers: list[Any], message: str) -> None:
            if status == 401 and scope.get("method") == "GET" and signs_in(scope):
                await send_sign_in_redirect(scope, send)
                return
            body = error_page(status, message, REQUEST_ID.get()).encode()
            kept = [h for h in headers if h[0] not in (b"content-type", b"content-length")]
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        *kept,
                        (b"content-type", b"text/html; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})

        async def send_or_convert(message: Message) -> None:
            nonlocal started, held
            if message["type"] == "http.response.start":
                started = True
                headers = message.get("headers", ())
                kind = next((bytes(v) for k, v in headers if k == b"content-type"), b"")
                if wants_page and message["status"] >= 400 and kind.startswith(b"application/json"):
                    held = message
                    return
            elif message["type"] == "http.response.body" and held is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                await send_page(
                    held["status"], list(held.get("headers", ())), _message_of(b"".join(chunks))
                )
                return
            await send(message)

        try:
            await self.app(scope, receive, send_or_convert)
        except Exception:
            if started:
                raise
            request_id = REQUEST_ID.get()
            log.error(
                "unhandled error serving %s %s (request %s)",
                scope.get("method"),
                scope.get("path"),
                request_id,
            )
            if wants_page:
                await send_page(500, [], "The server hit an unexpected error.")
            else:
                body = json.dumps(
                    {"error": "internal", "message": "internal error", "request_id": request_id}
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
            raise  # the server logs the traceback; the client already has its answer


def install_offline_docs(app: FastAPI) -> None:
    """Serve ``/docs`` with the vendored Swagger UI; remove the CDN-only ``/redoc``."""
    docs_url, openapi_url = app.docs_url or "/docs", app.openapi_url or "/openapi.json"
    dropped = {docs_url, app.redoc_url}
    app.router.routes[:] = [
        r for r in app.router.routes if not (isinstance(r, Route) and r.path in dropped)
    ]
    app.redoc_url = None
    title = f"{app.title} API"

    async def docs(_request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{SWAGGER_UI_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_UI_PATH}/favicon-32x32.png",
        )

    # A plain Starlette route, as FastAPI's own docs route is (the route audit treats
    # those as the framework's pages, not API routes).
    app.add_route(docs_url, docs, include_in_schema=False)
