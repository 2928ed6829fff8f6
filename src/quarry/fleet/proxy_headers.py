"""Which headers the IDE proxy forwards, drops and sets, in both directions.

Kept apart from ``quarry.fleet.proxy`` (the request flow and failure policy) because
these are pure functions of header lists: what a reverse proxy must strip (hop-by-hop
headers, RFC 9110 section 7.6.1), what it adds (``X-Forwarded-*``) and which request
id follows the request to the upstream.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from starlette.types import Scope

from quarry.core.logs import REQUEST_ID

Headers = Sequence[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
    }
)
# Request headers the proxy sets itself (``Host`` is the upstream's own).
_REPLACED = frozenset(
    {b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-request-id"}
)
_REQUEST_ID_MAX = 200


def hop_by_hop_names(headers: Headers) -> frozenset[str]:
    """The fixed hop-by-hop set plus every header the ``Connection`` header names."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.decode("latin-1").split(",")
        if token.strip()
    }
    return HOP_BY_HOP | named


def strip_hop_by_hop(headers: Headers) -> list[tuple[bytes, bytes]]:
    drop = hop_by_hop_names(headers)
    return [
        (name, value)
        for name, value in headers
        if (key := name.decode("latin-1").lower()) not in drop and not key.startswith("proxy-")
    ]


def header(headers: Headers, name: bytes) -> bytes | None:
    """The first value of ``name`` (lower case), or ``None``."""
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def content_length(headers: Headers) -> int | None:
    value = header(headers, b"content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def has_body(headers: Headers) -> bool:
    """Whether a request with these headers carries a (non-empty) body."""
    length = header(headers, b"content-length")
    if length is not None:
        return length.strip() not in (b"", b"0")
    return header(headers, b"transfer-encoding") is not None


def forwarded_headers(scope: Scope, request_id: str) -> list[tuple[bytes, bytes]]:
    """The request's end-to-end headers plus ``X-Forwarded-*`` and ``X-Request-Id``.

    ``Host`` is dropped (the proxy sets the upstream's); the original goes to
    ``X-Forwarded-Host``. An incoming ``X-Forwarded-Proto``/``-Host`` (set by a load
    balancer in front of this replica) is kept, ``X-Forwarded-For`` is appended to.
    ``Authorization`` passes through untouched: the Factory authenticates itself.
    """
    raw: list[tuple[bytes, bytes]] = list(scope.get("headers") or [])
    kept = [(k, v) for k, v in strip_hop_by_hop(raw) if k.lower() not in _REPLACED]
    client = scope.get("client")
    client_ip = client[0] if client else "unknown"
    prior_for = header(raw, b"x-forwarded-for")
    xff = client_ip
    if prior_for:
        prior = prior_for.decode("latin-1")
        # uvicorn (proxy_headers) may already have taken the client from this header;
        # do not name the same address twice.
        last = prior.rsplit(",", 1)[-1].strip()
        xff = prior if last == client_ip else f"{prior}, {client_ip}"
    proto = header(raw, b"x-forwarded-proto") or str(scope.get("scheme", "http")).encode()
    host = header(raw, b"x-forwarded-host") or header(raw, b"host")
    kept.append((b"x-forwarded-for", xff.encode("latin-1")))
    kept.append((b"x-forwarded-proto", proto))
    if host:
        kept.append((b"x-forwarded-host", host))
    kept.append((b"x-request-id", request_id.encode("latin-1")))
    return kept


def request_id_of(scope: Scope) -> str:
    """The id this process already gave the request (``RequestIdMiddleware`` runs in
    front of the proxy on a serve replica, and puts that id on the response), else a
    sane incoming ``X-Request-Id``, else a new one: one id follows the request across
    processes, and the client sees the id the Factory logged."""
    current = REQUEST_ID.get()
    if current:
        return current
    incoming = header(list(scope.get("headers") or []), b"x-request-id")
    if incoming:
        text = incoming.decode("latin-1").strip()
        if 0 < len(text) <= _REQUEST_ID_MAX and text.isprintable():
            return text
    return uuid.uuid4().hex
