"""Static assets under content-hashed names, cached for a year.

Why: a page must never run yesterday's script against today's HTML, and a browser
should not ask again for a file that cannot change. Each file under ``static/`` is
also served as ``/static/<stem>.<hash>.<ext>`` (the first 12 hex digits of the
SHA-256 of what is served) with ``Cache-Control: public, max-age=31536000,
immutable``; pages link those names through :func:`asset_url`. The plain names keep
working (``no-cache``: revalidated by ETag) for what links them without a template
(the offline API docs).

ES modules import each other by relative name (``import ... from "./controls.js"``);
those imports are rewritten to the hashed names, and a module's hash is taken after
the rewrite, so a change in an imported module changes the importer's name too.
The manifest is built once per process, on first use, from the package files.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

STATIC_DIR = Path(__file__).parent / "static"
PREFIX = "/static/"
IMMUTABLE = "public, max-age=31536000, immutable"
_IMPORT = re.compile(r"""((?:from|import)\s*\(?\s*["'])\./([A-Za-z0-9_./-]+\.js)(["'])""")
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@dataclass(frozen=True)
class Asset:
    name: str  # the hashed path under /static/
    body: bytes
    media_type: str
    etag: str


class Manifest:
    """Plain relative path -> hashed asset, and hashed path -> asset."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.by_plain: dict[str, Asset] = {}
        self.by_hashed: dict[str, Asset] = {}
        for path in sorted(root.rglob("*")):
            if path.is_file():
                self._add(path.relative_to(root).as_posix(), ())

    def _add(self, rel: str, stack: tuple[str, ...]) -> Asset:
        found = self.by_plain.get(rel)
        if found is not None:
            return found
        if rel in stack:
            raise ValueError(f"static modules import each other in a cycle: {(*stack, rel)}")
        path = self.root / rel
        body = path.read_bytes()
        if path.suffix == ".js" and not rel.startswith("vendor/"):
            folder = rel.rsplit("/", 1)[0] + "/" if "/" in rel else ""

            def hashed(match: re.Match[str]) -> str:
                target = self._add(folder + match.group(2), (*stack, rel))
                return match.group(1) + "./" + target.name.rsplit("/", 1)[-1] + match.group(3)

            body = _IMPORT.sub(hashed, body.decode()).encode()
        digest = hashlib.sha256(body).hexdigest()[:12]
        stem, dot, ext = rel.rpartition(".")
        name = f"{stem}.{digest}.{ext}" if dot else f"{rel}.{digest}"
        media = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        asset = Asset(name, body, media or "application/octet-stream", f'"{digest}"')
        self.by_plain[rel] = asset
        self.by_hashed[name] = asset
        return asset

    def url(self, rel: str) -> str:
        asset = self.by_plain.get(rel)
        if asset is None:
            raise KeyError(f"no static file {rel!r} under {self.root}")
        return PREFIX + asset.name


_lock = threading.Lock()
_manifest: Manifest | None = None


def manifest() -> Manifest:
    global _manifest
    with _lock:
        if _manifest is None:
            _manifest = Manifest(STATIC_DIR)
        return _manifest


def asset_url(rel: str) -> str:
    """The hashed URL of ``static/<rel>``, for templates."""
    return manifest().url(rel)


class HashedStatic:
    """Mounted at ``/static``: hashed names from memory (immutable), plain names from
    the folder (revalidated)."""

    def __init__(self) -> None:
        self.files = StaticFiles(directory=STATIC_DIR)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rel = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and rel.startswith(root):
            rel = rel[len(root) :]
        asset = manifest().by_hashed.get(rel.lstrip("/"))
        if asset is None or scope.get("method") not in ("GET", "HEAD"):
            await self.files(scope, receive, send)
            return
        headers = {
            "Cache-Control": IMMUTABLE,
            "ETag": asset.etag,
            "X-Content-Type-Options": "nosniff",
        }
        if Headers(scope=scope).get("if-none-match") == asset.etag:
            await Response(status_code=304, headers=headers)(scope, receive, send)
            return
        body = b"" if scope["method"] == "HEAD" else asset.body
        response = Response(body, media_type=asset.media_type, headers=headers)
        if scope["method"] == "HEAD":
            response.headers["content-length"] = str(len(asset.body))
        await response(scope, receive, send)
