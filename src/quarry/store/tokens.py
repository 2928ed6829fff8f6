"""Queries on API tokens and tenants.

Secrets are generated here and returned once; only their SHA-256 is stored, and a
lookup is by that hash (an indexed equality on a value an attacker cannot choose to
collide), followed by a constant-time comparison of the stored hash.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from quarry.core.clock import utcnow
from quarry.core.errors import BadRequest, NotFound
from quarry.store.auth_tables import api_tokens
from quarry.store.tables import tenants, workspaces

TOKEN_PREFIX = "qk_"  # noqa: S105 (a marker, not a secret)
ROLES = ("viewer", "editor", "admin")
TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


_SECRET_BYTES = 32
# What ``new_secret`` makes: the prefix, then the unpadded URL-safe base64 of the bytes.
_SECRET_SHAPE = re.compile(
    rf"^{re.escape(TOKEN_PREFIX)}[A-Za-z0-9_-]{{{math.ceil(_SECRET_BYTES * 4 / 3)}}}$"
)


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def looks_like_secret(presented: str) -> bool:
    """Whether a presented string could be a token at all: anything else is refused
    without a database lookup (or a cache entry)."""
    return _SECRET_SHAPE.match(presented) is not None


@dataclass(frozen=True)
class TokenRow:
    id: str
    tenant_id: str
    role: str
    name: str
    email: str
    token_hash: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def usable(self, now: datetime) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class TenantRow:
    id: str
    name: str
    created_at: datetime
    workspaces: int


def _row(m: object) -> TokenRow:
    r = m._mapping  # type: ignore[attr-defined]
    return TokenRow(
        id=r["id"],
        tenant_id=r["tenant_id"],
        role=r["role"],
        name=r["name"],
        email=r["email"],
        token_hash=r["token_hash"],
        prefix=r["prefix"],
        created_at=r["created_at"],
        expires_at=r["expires_at"],
        revoked_at=r["revoked_at"],
    )


def check_tenant_id(tenant_id: str) -> str:
    if not TENANT_ID.match(tenant_id):
        raise BadRequest(
            f"invalid tenant id {tenant_id!r}: use 1-63 lowercase letters, digits, '-' or '_'",
            parameter="tenant",
        )
    return tenant_id


def create_tenant(conn: Connection, tenant_id: str, name: str | None = None) -> TenantRow:
    check_tenant_id(tenant_id)
    if conn.execute(select(tenants.c.id).where(tenants.c.id == tenant_id)).first() is not None:
        raise BadRequest(f"tenant {tenant_id!r} already exists", parameter="tenant")
    now = utcnow()
    conn.execute(insert(tenants).values(id=tenant_id, name=name or tenant_id, created_at=now))
    return TenantRow(tenant_id, name or tenant_id, now, 0)


def list_tenants(conn: Connection) -> list[TenantRow]:
    from sqlalchemy import func

    counts = (
        select(workspaces.c.tenant_id, func.count().label("n"))
        .group_by(workspaces.c.tenant_id)
        .subquery()
    )
    rows = conn.execute(
        select(tenants, counts.c.n)
        .outerjoin(counts, counts.c.tenant_id == tenants.c.id)
        .order_by(tenants.c.id)
    ).all()
    return [TenantRow(r.id, r.name, r.created_at, int(r.n or 0)) for r in rows]


def create_token(
    conn: Connection,
    tenant_id: str,
    role: str,
    name: str,
    *,
    email: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[TokenRow, str]:
    """Insert a token; returns the row and the secret (shown once, never stored)."""
    if role not in ROLES:
        raise BadRequest(f"invalid role {role!r}; roles: {', '.join(ROLES)}", parameter="role")
    if not name or len(name) > 200:
        raise BadRequest("a token needs a name of 1-200 characters", parameter="name")
    if expires_at is not None and expires_at <= utcnow():
        raise BadRequest("expiry is in the past", parameter="expires")
    if conn.execute(select(tenants.c.id).where(tenants.c.id == tenant_id)).first() is None:
        raise NotFound(
            f"unknown tenant {tenant_id!r}; create it first (quarry tenants create {tenant_id})",
            parameter="tenant",
        )
    secret = new_secret()
    token_id = uuid.uuid4().hex[:16]
    row = TokenRow(
        id=token_id,
        tenant_id=tenant_id,
        role=role,
        name=name,
        email=email or f"{token_id}@tokens.quarry.invalid",
        token_hash=hash_secret(secret),
        prefix=secret[:10],
        created_at=utcnow(),
        expires_at=expires_at,
        revoked_at=None,
    )
    conn.execute(insert(api_tokens).values(**row.__dict__))
    return row, secret


def find_by_secret(conn: Connection, secret: str) -> TokenRow | None:
    """The token a presented secret belongs to (usable or not), or None."""
    digest = hash_secret(secret)
    found = conn.execute(select(api_tokens).where(api_tokens.c.token_hash == digest)).first()
    if found is None:
        return None
    row = _row(found)
    return row if hmac.compare_digest(row.token_hash, digest) else None


def list_tokens(conn: Connection, tenant_id: str | None = None) -> list[TokenRow]:
    query = select(api_tokens).order_by(api_tokens.c.tenant_id, api_tokens.c.created_at)
    if tenant_id is not None:
        query = query.where(api_tokens.c.tenant_id == tenant_id)
    return [_row(r) for r in conn.execute(query).all()]


def revoke_token(conn: Connection, token_id: str) -> TokenRow:
    found = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).first()
    if found is None:
        raise NotFound(f"no token with id {token_id!r}", parameter="token_id")
    row = _row(found)
    if row.revoked_at is None:
        conn.execute(
            update(api_tokens).where(api_tokens.c.id == token_id).values(revoked_at=utcnow())
        )
    return _row(conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).one())


def any_active_token(conn: Connection) -> bool:
    now = utcnow()
    found = conn.execute(
        select(api_tokens.c.id)
        .where(api_tokens.c.revoked_at.is_(None))
        .where((api_tokens.c.expires_at.is_(None)) | (api_tokens.c.expires_at > now))
        .limit(1)
    ).first()
    return found is not None
