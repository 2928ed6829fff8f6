"""Where an app's stored result lives: the key is the cache of (revision, app, controls)."""

from __future__ import annotations

from typing import Any

from quarry.core.hashing import canonical_json, sha256_hex
from quarry.store.objects.base import tenant_prefix


def _segment(label: str, value: str) -> str:
    if not value or "/" in value or value in {".", ".."}:
        raise ValueError(f"invalid {label} for an object key: {value!r}")
    return value


def app_result_key(
    tenant_id: str,
    workspace_id: str,
    revision_id: str,
    app_name: str,
    controls: dict[str, Any],
) -> str:
    """``t/<tenant>/apps/<workspace>/<revision>/<sha256>.json``.

    The digest covers the app name and the *resolved* controls (see
    :func:`quarry.runtime.apps.controls.resolve_controls`) as canonical JSON, so
    equal requests share one stored result and any other control value misses.
    """
    digest = sha256_hex(canonical_json([app_name, controls]))
    return (
        f"{tenant_prefix(tenant_id)}/apps/{_segment('workspace id', workspace_id)}/"
        f"{_segment('revision id', revision_id)}/{digest}.json"
    )
