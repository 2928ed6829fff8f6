"""factory: workspace origins, compile status (slot reserved for issue 4)

Revision ID: 0004_factory
Revises: 0003_runs
Create Date: 2026-12-01 19:10:00.000000
"""

from __future__ import annotations

revision = "0004_factory"
down_revision = "0003_runs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
