"""A workspace whose one database, ``warehouse``, is a real Postgres database: the
fleet tests run workflows against it (side effects they can count, ``pg_sleep``
steps they can interrupt), each with its own workflows."""

from __future__ import annotations

from pathlib import Path


def warehouse_workspace(root: Path, warehouse_db: str, workflows: dict[str, str]) -> Path:
    """Write ``root/config.yml`` naming ``warehouse_db`` on the test Postgres as the
    database ``warehouse``, and each of ``workflows`` (name -> YAML) as
    ``workflows/<name>.workflow.yml``; ``root`` is returned."""
    (root / "workflows").mkdir(parents=True)
    (root / "config.yml").write_text(
        "databases:\n"
        "  - name: warehouse\n    type: postgres\n    host: 127.0.0.1\n    port: 5432\n"
        f"    user: postgres\n    database: {warehouse_db}\n"
        "models: []\n"
    )
    for name, body in workflows.items():
        (root / "workflows" / f"{name}.workflow.yml").write_text(body)
    return root
