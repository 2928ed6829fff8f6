"""``quarry tokens`` and ``quarry tenants``: who may call the API, as what.

These talk to the state database directly (an operator's tool, like ``migrate``):
create prints the secret exactly once; only its hash is stored.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer

from quarry.cli_output import make_console
from quarry.core.clock import utcnow
from quarry.core.errors import BadRequest, QuarryError

console = make_console(stderr=True)
out = make_console()
_DURATION = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_expiry(value: str | None) -> datetime | None:
    """``30d``, ``12h``, ``90m``, ``2w`` from now, or an ISO-8601 timestamp."""
    if value is None or value == "never":
        return None
    match = _DURATION.match(value)
    if match:
        return utcnow() + timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            f"--expires takes e.g. 30d, 12h, 90m, 2w, never or an ISO timestamp; got {value!r}",
            parameter="--expires",
        ) from None
    if when.tzinfo is None:
        raise BadRequest("--expires timestamp needs a UTC offset", parameter="--expires")
    return when


def _engine(settings_for: Any) -> Any:
    from quarry.store.db import create_state_engine
    from quarry.store.migrate import prepare_schema

    settings = settings_for(None)
    engine = create_state_engine(settings.database_url)
    prepare_schema(engine, skip_migrations=settings.skip_migrations)
    return engine


def register(app: typer.Typer, settings_for: Any, fail: Any) -> None:
    tokens = typer.Typer(help="API tokens: create (secret shown once), list, revoke.")
    tenants = typer.Typer(help="Tenants: the owners of workspaces and tokens.")
    app.add_typer(tokens, name="tokens")
    app.add_typer(tenants, name="tenants")

    @tokens.command("create")
    def create(
        tenant: Annotated[str, typer.Option(help="Tenant the token is confined to.")],
        role: Annotated[str, typer.Option(help="viewer | editor | admin")] = "viewer",
        name: Annotated[str, typer.Option(help="What the token is for (and git author).")] = "",
        email: Annotated[str | None, typer.Option(help="Git author email for edits.")] = None,
        expires: Annotated[
            str | None, typer.Option(help="30d, 12h, 2w, never, or an ISO timestamp.")
        ] = "90d",
    ) -> None:
        """Create a token; the secret is printed once, on stdout, and never again."""
        from quarry.store import tokens as tokq

        try:
            when = parse_expiry(expires)
            engine = _engine(settings_for)
            with engine.begin() as conn:
                row, secret = tokq.create_token(
                    conn, tenant, role, name or f"{role} token", email=email, expires_at=when
                )
        except QuarryError as exc:
            raise fail(exc) from exc
        console.print(
            f"created token {row.id} ({row.role} of tenant {row.tenant_id}, "
            f"expires {row.expires_at.isoformat() if row.expires_at else 'never'}); "
            "store the secret now, it is not shown again:"
        )
        out.print(secret, markup=False, highlight=False)

    @tokens.command("list")
    def list_cmd(
        tenant: Annotated[str | None, typer.Option(help="Only this tenant's tokens.")] = None,
    ) -> None:
        """Tokens (never their secrets): id, tenant, role, status, prefix, name."""
        from quarry.store import tokens as tokq

        try:
            engine = _engine(settings_for)
            with engine.connect() as conn:
                rows = tokq.list_tokens(conn, tenant)
        except QuarryError as exc:
            raise fail(exc) from exc
        now = utcnow()
        for r in rows:
            expiry = r.expires_at.isoformat() if r.expires_at else "never"
            out.print(
                f"{r.id}  {r.tenant_id}  {r.role:<6}  {r.status(now):<7}  {r.prefix}…  "
                f"expires {expiry}  {r.name}",
                markup=False,
                highlight=False,
            )

    @tokens.command("revoke")
    def revoke(token_id: Annotated[str, typer.Argument(help="The token's id (see list).")]) -> None:
        """Revoke a token: refused everywhere within auth_cache_ttl seconds."""
        from quarry.store import tokens as tokq

        try:
            engine = _engine(settings_for)
            with engine.begin() as conn:
                row = tokq.revoke_token(conn, token_id)
        except QuarryError as exc:
            raise fail(exc) from exc
        out.print(f"revoked {row.id} ({row.role} of tenant {row.tenant_id})")

    @tenants.command("create")
    def tenant_create(
        tenant_id: Annotated[str, typer.Argument(help="Lowercase id, e.g. acme.")],
        name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    ) -> None:
        """Create a tenant."""
        from quarry.store import tokens as tokq

        try:
            engine = _engine(settings_for)
            with engine.begin() as conn:
                row = tokq.create_tenant(conn, tenant_id, name)
        except QuarryError as exc:
            raise fail(exc) from exc
        out.print(f"created tenant {row.id}")

    @tenants.command("list")
    def tenant_list() -> None:
        """Tenants and how many workspaces each owns."""
        from quarry.store import tokens as tokq

        try:
            engine = _engine(settings_for)
            with engine.connect() as conn:
                rows = tokq.list_tenants(conn)
        except QuarryError as exc:
            raise fail(exc) from exc
        for r in rows:
            out.print(f"{r.id}  {r.workspaces} workspace(s)  {r.name}", markup=False)
