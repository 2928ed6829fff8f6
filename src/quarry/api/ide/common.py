"""What every IdeOnly route needs: the Factory, the workspace, and an editor check."""

from __future__ import annotations

from fastapi import Request

from quarry.api.deps import AccessRole, Principal, principal
from quarry.core.errors import BadRequest, QuarryError
from quarry.factory.service import Factory
from quarry.store.workspaces import WorkspaceRow


class Forbidden(QuarryError):
    status_code = 403
    code = "forbidden"


def factory(request: Request) -> Factory:
    found: Factory = request.app.state.factory
    return found


def require(request: Request, role: AccessRole) -> Principal:
    """The caller, if their role allows ``role``-level actions; else 403."""
    who = principal(request)
    if who.role < role:
        raise Forbidden(
            f"this needs the {role.name.lower()} role; the token has {who.role.name.lower()}",
            required=role.name.lower(),
        )
    return who


def workspace_of(request: Request, name: str, who: Principal) -> WorkspaceRow:
    """The caller's tenant's workspace (blocking: call on a worker thread)."""
    return factory(request).workspace(who.tenant_id, name)


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"request body over {limit} bytes", parameter="body", limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"request body over {limit} bytes", parameter="body", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)
