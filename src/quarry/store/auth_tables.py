"""API tokens: one tenant, one role, stored as a hash.

The secret itself (``qk_`` + 32 random bytes, URL-safe base64) is shown once at
creation and never stored: a row keeps its SHA-256, which is enough because the
secret has 256 bits of entropy (no salt or slow hash is needed against guessing).
``prefix`` (the first characters of the secret) lets an operator recognise a token in
``quarry tokens list`` without it being usable. A token stops working when it is
revoked (``revoked_at``) or expires (``expires_at``).
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, String, Table

from quarry.store.tables import HASH, ID, metadata
from quarry.store.types import UtcDateTime

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("role", String(16), nullable=False),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=False),
    Column("token_hash", HASH, nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=True),
    Column("revoked_at", UtcDateTime(), nullable=True),
    Index("ix_api_tokens_tenant", "tenant_id", "created_at"),
)
