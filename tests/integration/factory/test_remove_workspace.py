"""Removing a workspace takes every row of its revisions with it, the membership
rows included (they carry no foreign keys, so no cascade does it for them), and
leaves other workspaces' revisions alone."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from quarry.demo import create_demo_workspace
from quarry.factory.local import compile_local
from quarry.node.services import Services
from quarry.store.factory_tables import delete_workspace
from quarry.store.tables import definitions, revision_files, revisions, workspaces


def _rows(svc: Services, workspace_id: str) -> tuple[int, int, int]:
    with svc.engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            int(
                conn.execute(
                    select(func.count()).select_from(t).where(t.c.workspace_id == workspace_id)
                ).scalar_one()
            )
            for t in (revisions, definitions, revision_files)
        )


def test_remove_deletes_membership_rows(services: Services, tmp_path: Path) -> None:
    for name in ("shop", "other"):
        root = create_demo_workspace(tmp_path / name)
        compile_local(services.engine, services.store, "local", root, name)
    with services.engine.connect() as conn:
        ids = dict(conn.execute(select(workspaces.c.name, workspaces.c.id)).all())
    shop_id, other_id = ids["shop"], ids["other"]
    before_other = _rows(services, other_id)
    assert all(n > 0 for n in _rows(services, shop_id))

    with services.engine.begin() as conn:
        assert delete_workspace(conn, shop_id)

    assert _rows(services, shop_id) == (0, 0, 0)
    assert _rows(services, other_id) == before_other
