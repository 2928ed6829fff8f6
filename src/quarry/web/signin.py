"""Sign-in and sign-out: an API token exchanged for the session cookie.

``GET /sign-in`` is public (the authentication middleware lets it through): a form
asking for a token. ``POST /sign-in`` checks the token exactly as a bearer token is
checked (the process's authenticator: hashed lookup, expiry, revocation) and sets the
session cookie (``quarry.web.session``). The form itself is protected against
login CSRF by a double-submit value: a random cookie set with the form, which the
posted field must match. Local open mode has nothing to sign in to and goes home.
``POST /sign-out`` is authenticated and CSRF-checked like every other write.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from quarry.web import session
from quarry.web.layout import TEMPLATES, page_headers

router = APIRouter(include_in_schema=False)


def safe_next(value: str | None) -> str:
    """Only a path on this site (``/x``, never ``//host`` or ``/\\host``)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    return value


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _form_page(request: Request, next_url: str, error: str | None, status: int = 200) -> Response:
    nonce = secrets.token_urlsafe(24)
    body = TEMPLATES.get_template("sign_in.html").render(
        title="Sign in", next_url=next_url, error=error, nonce=nonce
    )
    response = HTMLResponse(body, status_code=status, headers=page_headers())
    response.set_cookie(
        session.SIGN_IN_COOKIE,
        nonce,
        max_age=3600,
        httponly=True,
        secure=_secure(request),
        samesite="strict",
        path="/sign-in",
    )
    if request.cookies.get(session.SESSION_COOKIE):
        response.delete_cookie(session.SESSION_COOKIE, path="/")  # stale or revoked
    return response


def _open(request: Request) -> bool:
    auth = getattr(request.app.state, "authenticator", None)
    return bool(getattr(auth, "open", False))


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_form(request: Request, next: str | None = None) -> Response:
    if _open(request):
        return RedirectResponse(safe_next(next), status_code=303)
    return _form_page(request, safe_next(next), None)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    if _open(request):
        return RedirectResponse("/", status_code=303)
    raw = await request.body()
    if len(raw) > session.MAX_FORM_BYTES:
        return _form_page(request, "/", "The form is too large.", 413)
    form: dict[str, list[str]] = parse_qs(raw.decode("utf-8", "replace"))
    field = form.get("nonce", [""])[0]
    cookie = request.cookies.get(session.SIGN_IN_COOKIE, "")
    next_url = safe_next(form.get("next", ["/"])[0])
    if not cookie or not hmac.compare_digest(field.encode(), cookie.encode()):
        return _form_page(request, next_url, "The sign-in form expired; please try again.", 403)
    token = form.get("token", [""])[0].strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    auth: Any = request.app.state.authenticator
    try:
        await auth.check_secret(token)
    except Exception as refused:  # Denied from quarry.api.auth (a layer above this one)
        message = getattr(refused, "message", None)
        if message is None:
            raise
        return _form_page(request, next_url, f"Sign-in failed: {message}.", 401)
    response = RedirectResponse(next_url, status_code=303)
    response.set_cookie(
        session.SESSION_COOKIE,
        token,
        max_age=session.SESSION_MAX_AGE,
        httponly=True,
        secure=_secure(request),
        samesite="lax",
        path="/",
    )
    response.delete_cookie(session.SIGN_IN_COOKIE, path="/sign-in")
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    response = RedirectResponse("/sign-in" if not _open(request) else "/", status_code=303)
    response.delete_cookie(session.SESSION_COOKIE, path="/")
    return response
