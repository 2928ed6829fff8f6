"""``quarry tenants`` and ``quarry tokens`` as real processes: create prints the
secret once (stdout, nothing else there), list never shows it, revoke works, and bad
input fails clearly without writing anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from quarry.store import tokens as tokq
from quarry.store.db import create_state_engine


def _quarry(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quarry", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_token_lifecycle_on_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    env = {"QUARRY_DATABASE_URL": url, "QUARRY_DATA_DIR": str(tmp_path)}

    unknown = _quarry(env, "tokens", "create", "--tenant", "acme", "--role", "editor")
    assert unknown.returncode == 1 and "quarry tenants create acme" in unknown.stderr
    assert _quarry(env, "tenants", "create", "acme").returncode == 0
    bad_role = _quarry(env, "tokens", "create", "--tenant", "acme", "--role", "root")
    assert bad_role.returncode == 1 and "invalid role 'root'" in bad_role.stderr
    bad_expiry = _quarry(env, "tokens", "create", "--tenant", "acme", "--expires", "soon")
    assert bad_expiry.returncode == 1 and "--expires" in bad_expiry.stderr
    engine = create_state_engine(url)
    with engine.connect() as conn:
        assert tokq.list_tokens(conn) == []

    created = _quarry(
        env, "tokens", "create", "--tenant", "acme", "--role", "editor", "--name", "ci"
    )
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("qk_") and "\n" not in secret
    with engine.connect() as conn:
        row = tokq.find_by_secret(conn, secret)
    assert row is not None and row.role == "editor" and row.tenant_id == "acme"
    assert row.expires_at is not None  # 90 days by default

    listed = _quarry(env, "tokens", "list")
    assert listed.returncode == 0 and row.id in listed.stdout and "active" in listed.stdout
    assert secret not in listed.stdout + listed.stderr

    assert _quarry(env, "tokens", "revoke", row.id).returncode == 0
    with engine.connect() as conn:
        revoked = tokq.find_by_secret(conn, secret)
    assert revoked is not None and revoked.revoked_at is not None
    assert "revoked" in _quarry(env, "tokens", "list").stdout
    missing = _quarry(env, "tokens", "revoke", "nope")
    assert missing.returncode == 1 and "no token with id 'nope'" in missing.stderr

    tenants = _quarry(env, "tenants", "list")
    assert tenants.returncode == 0 and "acme" in tenants.stdout
    assert _quarry(env, "tenants", "create", "Bad/Id").returncode == 1
    engine.dispose()
