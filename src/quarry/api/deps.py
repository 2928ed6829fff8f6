"""Request-scoped access to the process's services and the caller's tenant."""

from __future__ import annotations

from fastapi import Request

from quarry.api.services import Services


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def tenant_id(request: Request) -> str:
    """Local mode serves its one configured tenant; tokens arrive with issue 7."""
    return services(request).settings.tenant
