"""Browser sessions: the session cookie and the CSRF token that goes with it.

Why a cookie holding the token itself, and no session table: every replica must
authenticate every request on its own (docs/security.md), and a serve replica has no
shared signing key. The cookie carries the API token the person signed in with
(``HttpOnly``: page scripts never see it; ``SameSite=Lax``; ``Secure`` over https), so
a request with the cookie is authenticated exactly like ``Authorization: Bearer`` —
same cache, same expiry and revocation — by any replica. Signing out clears the
cookie; revoking the token ends every session made with it.

CSRF: a cookie is sent by the browser on its own, so every state-changing request
authenticated by the cookie must also carry the CSRF token, either as the
``X-CSRF-Token`` header (page scripts read it from ``<meta name="csrf-token">``) or as
the ``csrf_token`` field of a form. The token is an HMAC of the session secret: any
replica can check it, and another site can neither read nor compute it. In local open
mode (no tokens, no cookie) the same check applies to requests that come from a
browser (they carry ``Origin`` or ``Sec-Fetch-Site``), keyed by a per-process secret,
so a web page elsewhere cannot make the local Quarry change anything; command-line
clients send neither header and are not affected.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import parse_qs

from starlette.types import Message, Receive, Scope

SESSION_COOKIE = "quarry_session"
SIGN_IN_COOKIE = "quarry_sign_in"  # the sign-in form's own CSRF value (double submit)
CSRF_HEADER = b"x-csrf-token"
CSRF_FIELD = "csrf_token"
SESSION_MAX_AGE = 12 * 3600  # seconds; the token's own expiry still applies
VIA_COOKIE_KEY = "quarry.via_cookie"  # set in the scope when the cookie authenticated
MAX_FORM_BYTES = 64 * 1024

# Open mode has no session secret to derive from: one per process (local mode is one
# process; a restart makes open pages reload once).
_OPEN_KEY = secrets.token_bytes(32)


class CsrfRefused(Exception):
    """The request changes state but carries no valid CSRF token."""


def csrf_token(session_secret: str | None) -> str:
    """The CSRF token of a session (``None``: open mode, the process key)."""
    key = _OPEN_KEY if session_secret is None else session_secret.encode()
    return hmac.new(key, b"quarry-csrf-v1", hashlib.sha256).hexdigest()


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


def cookies(scope: Scope) -> dict[str, str]:
    raw = header(scope, b"cookie")
    found: dict[str, str] = {}
    if raw is None:
        return found
    for part in raw.decode("latin-1").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in found:
            found[name] = value.strip().strip('"')
    return found


def session_secret(scope: Scope) -> str | None:
    return cookies(scope).get(SESSION_COOKIE) or None


def from_browser(scope: Scope) -> bool:
    """Browsers send ``Sec-Fetch-Site`` (and ``Origin`` on writes); other clients don't."""
    return header(scope, b"sec-fetch-site") is not None or header(scope, b"origin") is not None


async def check_csrf(scope: Scope, receive: Receive, expected: str) -> Receive:
    """Refuse unless the request carries ``expected``; returns the ``receive`` to use
    from now on (a form body read here is replayed to the application)."""
    given = header(scope, CSRF_HEADER)
    if given is not None:
        if hmac.compare_digest(given, expected.encode()):
            return receive
        raise CsrfRefused("the X-CSRF-Token header does not match this session")
    kind = (header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
    if kind != b"application/x-www-form-urlencoded":
        raise CsrfRefused("a browser request that changes something needs its CSRF token")
    body, more = bytearray(), True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            raise CsrfRefused("the request ended before its form arrived")
        body += message.get("body", b"")
        more = bool(message.get("more_body"))
        if len(body) > MAX_FORM_BYTES:
            raise CsrfRefused("the form is too large")
    field = parse_qs(body.decode("latin-1")).get(CSRF_FIELD, [""])[0]
    if not hmac.compare_digest(field.encode("latin-1"), expected.encode()):
        raise CsrfRefused("the form's CSRF token is missing or does not match this session")
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()  # http.disconnect, when it comes
        replayed = True
        return {"type": "http.request", "body": bytes(body), "more_body": False}

    return replay


def request_csrf(scope: Scope) -> str:
    """The token a page embeds for its forms and scripts."""
    return csrf_token(session_secret(scope) if scope.get(VIA_COOKIE_KEY) else None)
