"""Rendering a page: one Jinja2 environment, the base layout's context, and the
security headers every page carries.

Why here: every page shares the navigation, the signed-in tenant and role, the CSRF
token its forms and scripts send, hashed asset URLs, and one Content-Security-Policy.
Autoescaping is on for every template, so a workspace value containing ``<script>``
is text; nothing is marked safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse

from quarry import __version__
from quarry.web import session
from quarry.web.assets import asset_url

# Pages run only their own files: no inline script, style or handler, no other origin.
STRICT_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
# The dashboard only: Vega and vega-embed set inline styles on the SVG and the
# tooltips they draw. Chart expressions run in Vega's interpreter (no eval).
DASHBOARD_CSP = STRICT_CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")

NAV = (
    ("home", "/", "Home"),
    ("dashboards", "/dashboards", "Dashboards"),
    ("runs", "/runs", "Runs"),
    ("schedules", "/schedules", "Schedules"),
    ("explore", "/explore", "Explore"),
    ("ide", "/ide", "IDE"),
    ("chat", "/chat", "Chat"),
)

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.globals["asset"] = asset_url


@dataclass(frozen=True)
class Viewer:
    """Who the page is for, as the base layout shows it."""

    tenant: str
    role: str
    name: str
    can_edit: bool
    signed_in: bool  # by session cookie (so a sign-out button makes sense)


def viewer(request: Request) -> Viewer:
    """The principal the authentication middleware admitted (``quarry.api`` sits above
    this package, so it is read from the scope by shape)."""
    found = request.scope.get("quarry.principal")
    tenant = getattr(found, "tenant_id", None)
    role = getattr(found, "role", None)
    if not isinstance(tenant, str) or role is None:
        raise HTTPException(401, "authentication required")
    return Viewer(
        tenant=tenant,
        role=str(getattr(role, "name", role)).lower(),
        name=str(getattr(found, "name", "")),
        can_edit=int(role) >= 2,
        signed_in=bool(request.scope.get(session.VIA_COOKIE_KEY)),
    )


def render(
    request: Request,
    template: str,
    *,
    title: str,
    section: str,
    csp: str = STRICT_CSP,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    body = TEMPLATES.get_template(template).render(
        title=title,
        section=section,
        nav=NAV,
        viewer=viewer(request),
        csrf=session.request_csrf(request.scope),
        version=__version__,
        **context,
    )
    return HTMLResponse(body, status_code=status, headers=page_headers(csp))


# What an action's redirect may announce: a fixed sentence per code, its blanks filled
# only with values of a safe shape, so a crafted link cannot put words in our mouth.
NOTICES = {
    "cancel_requested": "Cancel requested.",
    "paused": "Paused {name}.",
    "resumed": "Resumed {name}.",
    "triggered": "Triggered {name}: run {run} ({outcome}).",
}
_SAFE = {
    "name": re.compile(r"[\w./-]{1,200}"),
    "run": re.compile(r"[0-9a-f-]{0,36}"),
    "outcome": re.compile(r"[a-z_]{1,40}"),
}


def notice(request: Request) -> str | None:
    """The sentence for ``?done=<code>&name=…`` after a form action, if well formed."""
    q = request.query_params
    template = NOTICES.get(q.get("done", ""))
    if template is None:
        return None
    values = {k: q.get(k, "") for k in _SAFE}
    if any(f"{{{k}}}" in template and not p.fullmatch(values[k]) for k, p in _SAFE.items()):
        return None
    return template.format(**values)


def page_headers(csp: str = STRICT_CSP) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }
