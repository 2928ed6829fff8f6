"""A workspace-sharded front for N Factories: the routing half of the plan past one
Factory (docs/capacity.md, "N Factories").

Each workspace has exactly one owner Factory, chosen by rendezvous (highest random
weight) hashing of the workspace name over the shard names: stable while the shard
set is stable, and adding or removing one shard moves only the workspaces that shard
gains or loses (about 1/N), which is why a plain ``hash % N`` is not used. A dead
owner is *not* replaced by another shard: its working copies and compile queue live
on its own volume, so answering from elsewhere would split the workspace's state in
two; its workspaces get the proxy's clean 503 with ``Retry-After`` until it is back,
and every other shard keeps answering.

Forwarding is the fleet's own streaming proxy (``quarry.fleet.proxy.ReverseProxy``,
one per shard); this module only picks the shard. Registering a workspace
(``POST /api/v1/workspaces``) names it in the JSON body, so that one body is read
(bounded) to route and then replayed to the owner unchanged.

It lives with the simulation test because Quarry has no multi-Factory router yet;
the production one would sit in ``quarry.fleet`` beside the proxy.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

from starlette.types import Message, Receive, Scope, Send

from quarry.fleet.proxy import ProxyConfig, ReverseProxy

_WORKSPACE_PATH = re.compile(r"^/api/v1/workspaces/([^/]+)")
_MAX_REGISTER_BODY = 64 * 1024


def owner(workspace: str, shards: list[str]) -> str:
    """The shard that owns ``workspace``: the highest hash of (shard, workspace)."""
    if not shards:
        raise ValueError("no shards to route to")
    return max(shards, key=lambda s: hashlib.sha256(f"{s}\0{workspace}".encode()).digest())


async def _json_error(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": {"code": "shard_routing", "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ShardRouter:
    """ASGI app: route each workspace's requests to the Factory that owns it."""

    def __init__(self, shards: Mapping[str, str], *, connect_retry_seconds: float = 1.0) -> None:
        self.names = sorted(shards)
        self.proxies = {
            name: ReverseProxy(
                ProxyConfig(
                    upstreams=(url,),
                    connect_retry_seconds=connect_retry_seconds,
                    retry_after_seconds=2,
                    upstream_name=f"Factory shard {name!r}",
                    upstream_setting="its shard URL",
                    unavailable_hint="the other shards keep answering; retry in {retry}s",
                )
            )
            for name, url in shards.items()
        }

    def owner(self, workspace: str) -> str:
        return owner(workspace, self.names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        match = _WORKSPACE_PATH.match(path)
        if match is not None:
            await self.proxies[self.owner(match.group(1))](scope, receive, send)
            return
        if scope["method"] == "POST" and path.rstrip("/") == "/api/v1/workspaces":
            await self._register(scope, receive, send)
            return
        await _json_error(send, 404, f"{path}: the shard router routes workspace paths only")

    async def _register(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > _MAX_REGISTER_BODY:
                await _json_error(send, 413, "workspace registration body too large")
                return
            chunks.append(chunk)
            more = bool(message.get("more_body"))
        body = b"".join(chunks)
        try:
            name = json.loads(body)["name"]
        except (ValueError, KeyError, TypeError):
            name = None
        if not isinstance(name, str) or not name:
            await _json_error(send, 422, "body.name: a workspace name is needed to pick its shard")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.proxies[self.owner(name)](scope, replay, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for proxy in self.proxies.values():
                    await proxy.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for proxy in self.proxies.values():
                    await proxy.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
