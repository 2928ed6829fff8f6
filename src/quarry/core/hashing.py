"""Content hashes and canonical JSON: the basis of revision ids, ETags and blob keys."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """One byte form per value, so equal definitions hash equal on every node."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def short_id(digest: str, length: int = 32) -> str:
    """128 bits of a sha256 is ample for collision resistance and keeps URLs short."""
    return digest[:length]
