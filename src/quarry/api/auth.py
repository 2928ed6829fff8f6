"""Authentication for every request, as raw ASGI in front of the application.

``AuthMiddleware`` runs before routing, so a route added later by anyone is covered
without doing anything: a request without a valid bearer token is a ``401``; a safe
method (GET, HEAD, OPTIONS) needs the viewer role and any other method the editor
role (but for the POSTs that only read, ``READ_ONLY_POSTS``), else ``403``. A route
that needs more checks the caller's role itself (``quarry.api.ide.common.require``).
Public paths (health, readiness, metrics, keep-alive, static files, the OpenAPI
document) are not authenticated; ``/metrics`` may require its own scrape token.

Token lookups are cached in memory by the secret's SHA-256 for ``auth_cache_ttl``
seconds (hits and misses alike), which keeps the hot read path free of database round
trips; a revoked token therefore stops working within that many seconds on every
process. Expiry is checked on every request against the cached row. A string that
does not have a token's exact shape is refused before the cache and the database, and
a full cache evicts its least recently used entry: a flood of made-up tokens neither
reaches the database for free nor empties the cache of the real ones.

Browsers: without an ``Authorization`` header the ``quarry_session`` cookie set by the
sign-in page is read as the token (same checks), and a state-changing request from a
browser must carry the CSRF token of ``quarry.web.session``, else ``403 csrf_failed``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass

from anyio import to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from quarry.api.deps import PRINCIPAL_KEY, AccessRole, Principal, local_principal
from quarry.core.settings import Role, Settings
from quarry.store import tokens as tokq
from quarry.store.db import Engine, is_sqlite
from quarry.store.tokens import TokenRow
from quarry.web import session

log = logging.getLogger(__name__)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/livez", "/metrics", "/keepalive", "/api/v1/keepalive", "/sign-in"}
)
PUBLIC_PREFIXES = ("/static/", "/docs", "/redoc", "/openapi.json", "/favicon.ico")
CACHE_LIMIT = 10_000


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


# POST routes that only read (their request is a body, not a change): a viewer may
# call them. Matched on the whole path, one workspace segment.
READ_ONLY_POSTS = (
    re.compile(r"^/api/v1/workspaces/[^/]+/semantic/query$"),
    re.compile(r"^/sign-out$"),  # forgets the browser's cookie; changes nothing stored
    # MCP speaks JSON-RPC in POSTs; its tools that write check the editor role
    # themselves (quarry.api.fleet.mcp).
    re.compile(r"^/mcp/?$"),
)


def required_role(method: str, path: str = "") -> AccessRole:
    if method.upper() in SAFE_METHODS:
        return AccessRole.VIEWER
    if method.upper() == "POST" and any(p.match(path) for p in READ_ONLY_POSTS):
        return AccessRole.VIEWER
    return AccessRole.EDITOR


class Denied(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def token_principal(row: TokenRow) -> Principal:
    return Principal(
        tenant_id=row.tenant_id,
        role=AccessRole[row.role.upper()],
        subject=f"token:{row.id}",
        name=row.name,
        email=row.email,
    )


def decide_open(settings: Settings, engine: Engine) -> bool:
    """Whether this process serves without authentication (see docs/security.md)."""
    if settings.auth == "open":
        return True
    if settings.auth == "tokens":
        return False
    if settings.role is not Role.ALL or not is_sqlite(str(engine.url)):
        return False
    with engine.connect() as conn:
        return not tokq.any_active_token(conn)


@dataclass(frozen=True)
class _Cached:
    """One cached lookup: the row (None: no such token) and what a hit needs."""

    until: float  # time.monotonic() after which the lookup is repeated
    row: TokenRow | None
    principal: Principal | None
    expires: float | None  # the token's expiry as a POSIX timestamp


class Authenticator:
    """Resolves a presented secret to a principal, with a short in-memory cache."""

    def __init__(self, engine: Engine, settings: Settings, *, open_mode: bool) -> None:
        self.engine = engine
        self.open = open_mode
        self.ttl = settings.auth_cache_ttl
        self.local = local_principal(settings.tenant)
        self._cache: dict[str, _Cached] = {}

    def _load(self, secret: str) -> TokenRow | None:
        with self.engine.connect() as conn:
            return tokq.find_by_secret(conn, secret)

    async def lookup(self, secret: str) -> _Cached:
        digest = tokq.hash_secret(secret)
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit is not None and hit.until > now:
            self._cache[digest] = self._cache.pop(digest)  # now the most recently used
            return hit
        row = await to_thread.run_sync(self._load, secret)
        self._cache.pop(digest, None)
        if len(self._cache) >= CACHE_LIMIT:
            del self._cache[next(iter(self._cache))]  # the least recently used
        entry = _Cached(
            until=now + self.ttl,
            row=row,
            principal=None if row is None else token_principal(row),
            expires=None if row is None or row.expires_at is None else row.expires_at.timestamp(),
        )
        self._cache[digest] = entry
        return entry

    async def authenticate(self, scope: Scope) -> Principal:
        if self.open:
            return self.local
        header = _header(scope, b"authorization")
        if header is None:
            # A browser's session cookie holds the token it signed in with (quarry.web.session).
            cookie = session.session_secret(scope)
            if cookie is None:
                raise Denied(
                    401, "unauthorized", "authentication required: Authorization: Bearer <token>"
                )
            scope[session.VIA_COOKIE_KEY] = True
            return await self.check_secret(cookie)
        scheme, _, secret = header.decode("latin-1").strip().partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise Denied(401, "unauthorized", "the Authorization header must be 'Bearer <token>'")
        return await self.check_secret(secret)

    async def check_secret(self, secret: str) -> Principal:
        """The principal of a presented token (header, session cookie or sign-in form)."""
        if not tokq.looks_like_secret(secret):
            raise Denied(401, "unauthorized", "invalid token")
        found = await self.lookup(secret)
        if found.row is None or found.principal is None:
            raise Denied(401, "unauthorized", "invalid token")
        if found.row.revoked_at is not None:
            raise Denied(401, "unauthorized", "token revoked")
        if found.expires is not None and found.expires <= time.time():
            raise Denied(401, "unauthorized", "token expired")
        return found.principal


class AuthMiddleware:
    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.auth = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET") if scope["type"] == "http" else "GET"
        try:
            principal = await self.auth.authenticate(scope)
            need = required_role(method, scope["path"])
            if principal.role < need:
                raise Denied(
                    403,
                    "forbidden",
                    f"{method} needs the {need.name.lower()} role; this token is "
                    f"{principal.role.name.lower()}",
                )
            receive = await _check_csrf(scope, receive, method)
        except Denied as denied:
            await _deny(scope, send, denied)
            return
        scope[PRINCIPAL_KEY] = principal
        await self.app(scope, receive, send)


async def _check_csrf(scope: Scope, receive: Receive, method: str) -> Receive:
    """A state-changing request from a browser (by session cookie, or any browser
    request in open mode) must carry the session's CSRF token (quarry.web.session)."""
    if method.upper() in SAFE_METHODS or scope["type"] != "http":
        return receive
    if scope.get(session.VIA_COOKIE_KEY):
        expected = session.csrf_token(session.session_secret(scope))
    elif _header(scope, b"authorization") is None and session.from_browser(scope):
        expected = session.csrf_token(None)
    else:
        return receive  # a bearer token: no browser sends one on its own
    try:
        return await session.check_csrf(scope, receive, expected)
    except session.CsrfRefused as refused:
        raise Denied(403, "csrf_failed", str(refused)) from refused


async def _deny(scope: Scope, send: Send, denied: Denied) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 4000 + denied.status})
        return
    body = json.dumps({"error": denied.code, "message": denied.message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if denied.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="quarry"'))
    await send({"type": "http.response.start", "status": denied.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None
