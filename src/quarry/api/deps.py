"""Request-scoped access to the process's services and the caller's identity.

Every route that touches tenant data gets the caller through ``principal`` (or
``tenant_id``, its tenant): it is the one place authentication is decided, so a
route added later is scoped to its tenant without doing anything of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from fastapi import HTTPException, Request

from quarry.node.node import Node
from quarry.runtime.services import Services, services_of


class AccessRole(IntEnum):
    """A token's role; ordered, so ``role >= AccessRole.EDITOR`` reads naturally."""

    VIEWER = 1
    EDITOR = 2
    ADMIN = 3


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant they are confined to, their role, and the identity
    written into git commits they make."""

    tenant_id: str
    role: AccessRole
    subject: str
    name: str
    email: str


def node(request: Request) -> Node:
    """The process's node (``quarry.node``), which ``create_app`` put on the app."""
    found = request.app.state.node
    assert isinstance(found, Node)
    return found


def services(request: Request) -> Services:
    return services_of(request.app.state)


# Where the authentication middleware (quarry.api.auth) leaves the caller in the scope.
PRINCIPAL_KEY = "quarry.principal"


def local_principal(tenant: str) -> Principal:
    """Open (local) mode: every request is its one configured tenant's admin."""
    return Principal(
        tenant_id=tenant,
        role=AccessRole.ADMIN,
        subject="local",
        name="Quarry local user",
        email="local@quarry.invalid",
    )


def principal(request: Request) -> Principal:
    """The authenticated caller. ``AuthMiddleware`` authenticates every non-public
    request before routing; reaching a route without a principal means the route is
    served without that middleware, which is refused unless the process runs open."""
    found = request.scope.get(PRINCIPAL_KEY)
    if isinstance(found, Principal):
        return found
    auth = getattr(request.app.state, "authenticator", None)
    if auth is not None and auth.open:
        p: Principal = auth.local
        return p
    raise HTTPException(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})


def tenant_id(request: Request) -> str:
    return principal(request).tenant_id
