"""Request-scoped access to the process's services and the caller's identity.

Every route that touches tenant data gets the caller through ``principal`` (or
``tenant_id``, its tenant): it is the one place authentication is decided, so a
route added later is scoped to its tenant without doing anything of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from fastapi import Request

from quarry.api.services import Services


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


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def principal(request: Request) -> Principal:
    """Local mode serves its one configured tenant as an admin (tokens: issue 7)."""
    tenant = services(request).settings.tenant
    return Principal(
        tenant_id=tenant,
        role=AccessRole.ADMIN,
        subject="local",
        name="Quarry local user",
        email="local@quarry.invalid",
    )


def tenant_id(request: Request) -> str:
    return principal(request).tenant_id
