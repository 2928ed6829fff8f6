"""IdeOnly: the file API of a working copy — tree, read, write, move, delete.

Writes carry ``expected_hash`` (the sha256 of the version the editor started from,
or ``null`` for a new file); a mismatch is a 409 and nothing changes. Every path is
confined to the workspace (400 otherwise, before anything is touched). Writes, moves
and deletes request a debounced compile; ``GET .../compile/status`` shows its outcome.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from quarry.api.deps import AccessRole, principal
from quarry.api.ide.common import factory, read_limited, require, workspace_of
from quarry.api.limits import file_write_body_bytes
from quarry.core.errors import BadRequest
from quarry.factory import files as fs

router = APIRouter(prefix="/api/v1/workspaces/{workspace}", tags=["ide: files"])

HASH = r"^[0-9a-f]{64}$"
ExpectedHash = Annotated[
    str | None,
    Query(pattern=HASH, description="sha256 of the version you read; required to change it."),
]


class FileWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str
    encoding: Literal["utf-8", "base64"] = "utf-8"
    expected_hash: str | None = Field(
        ..., pattern=HASH, description="sha256 of the version you edited, null for a new file."
    )

    def data(self) -> bytes:
        if self.encoding == "utf-8":
            return self.content.encode("utf-8", "surrogatepass")
        try:
            return base64.b64decode(self.content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadRequest("content is not valid base64", parameter="content") from exc


class FileMove(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str = Field(alias="from", min_length=1, max_length=4096)
    dest: str = Field(alias="to", min_length=1, max_length=4096)
    expected_hash: str | None = Field(None, pattern=HASH)


def _parse(model: type[FileWrite] | type[FileMove], raw: bytes) -> Any:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        details = [
            {"parameter": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors()
        ]
        raise BadRequest("invalid request body", problems=details) from None


@router.get("/files")
async def list_files(
    request: Request, workspace: str, path: Annotated[str | None, Query()] = None
) -> dict[str, Any]:
    who = principal(request)
    fac = factory(request)

    def run() -> dict[str, Any]:
        ws = workspace_of(request, workspace, who)
        return {"files": [e.to_json() for e in fs.list_tree(fac.root(ws), path)]}

    return await run_in_threadpool(run)


@router.get("/files/{path:path}")
async def read_file(request: Request, workspace: str, path: str) -> Response:
    who = principal(request)
    fac = factory(request)

    def run() -> tuple[bytes, str]:
        ws = workspace_of(request, workspace, who)
        return fs.read_file(fac.root(ws), path)

    data, digest = await run_in_threadpool(run)
    try:
        data.decode("utf-8")
        media = "text/plain; charset=utf-8"
    except UnicodeDecodeError:
        media = "application/octet-stream"
    headers = {"ETag": f'"{digest}"', "X-Quarry-Content-Hash": digest, "Cache-Control": "no-store"}
    return Response(data, media_type=media, headers=headers)


@router.put("/files/{path:path}")
async def write_file(request: Request, workspace: str, path: str) -> dict[str, Any]:
    """Body: ``{"content": ..., "encoding": "utf-8"|"base64", "expected_hash": ...}``."""
    who = require(request, AccessRole.EDITOR)
    fac = factory(request)
    limit = file_write_body_bytes(fac.limits.dataset_bytes)  # as RequestLimitsMiddleware
    body: FileWrite = _parse(FileWrite, await read_limited(request, limit))
    data = body.data()

    def run() -> str:
        ws = workspace_of(request, workspace, who)
        with fac.lock(ws):
            digest = fs.write_file(fac.root(ws), path, data, body.expected_hash, fac.limits)
        fac.request_compile(ws)
        return digest

    digest = await run_in_threadpool(run)
    return {"path": path, "hash": digest, "size": len(data), "compile": "pending"}


@router.delete("/files/{path:path}")
async def delete_file(
    request: Request, workspace: str, path: str, expected_hash: ExpectedHash = None
) -> dict[str, Any]:
    who = require(request, AccessRole.EDITOR)
    fac = factory(request)

    def run() -> None:
        ws = workspace_of(request, workspace, who)
        with fac.lock(ws):
            fs.delete_file(fac.root(ws), path, expected_hash)
        fac.request_compile(ws)

    await run_in_threadpool(run)
    return {"path": path, "deleted": True, "compile": "pending"}


@router.post("/move")
async def move_file(request: Request, workspace: str) -> dict[str, Any]:
    """Body: ``{"from": "a.yml", "to": "b.yml", "expected_hash": ...}``; ``to`` must
    not exist."""
    who = require(request, AccessRole.EDITOR)
    fac = factory(request)
    body: FileMove = _parse(FileMove, await read_limited(request, 65536))

    def run() -> str:
        ws = workspace_of(request, workspace, who)
        with fac.lock(ws):
            digest = fs.move_file(fac.root(ws), body.source, body.dest, body.expected_hash)
        fac.request_compile(ws)
        return digest

    digest = await run_in_threadpool(run)
    return {"from": body.source, "to": body.dest, "hash": digest, "compile": "pending"}
