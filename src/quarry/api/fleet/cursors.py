"""Keyset page cursors for list routes (runs, agent threads): the last row's time and
id, opaque to clients so the ordering can change without breaking their links."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from quarry.core.errors import BadRequest


def encode_cursor(at: datetime, row_id: str) -> str:
    raw = json.dumps([at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def encode_name_cursor(name: str) -> str:
    """A cursor after a row ordered by name alone (the workspace list)."""
    return base64.urlsafe_b64encode(json.dumps({"after": name}).encode()).decode()


def decode_name_cursor(cursor: str) -> str:
    """The name a name cursor continues after; a 400 naming ``cursor`` otherwise
    (a cursor of another list, a truncated or hand-made one)."""
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        after = value["after"] if isinstance(value, dict) else None
    except (ValueError, TypeError, KeyError) as exc:
        raise BadRequest("invalid cursor: not one this list returned", parameter="cursor") from exc
    if not isinstance(after, str) or not after:
        raise BadRequest("invalid cursor: not one this list returned", parameter="cursor")
    return after


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (time, id) a cursor names; a 400 naming ``cursor`` when it names none."""
    try:
        at, row_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(at), str(row_id)
    except (ValueError, TypeError) as exc:
        raise BadRequest("invalid cursor", parameter="cursor") from exc
