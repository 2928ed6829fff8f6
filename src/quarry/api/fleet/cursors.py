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


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (time, id) a cursor names; a 400 naming ``cursor`` when it names none."""
    try:
        at, row_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(at), str(row_id)
    except (ValueError, TypeError) as exc:
        raise BadRequest("invalid cursor", parameter="cursor") from exc
