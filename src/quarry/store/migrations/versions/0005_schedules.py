"""schedules, monitors, alerts (slot reserved for issue 6)

Revision ID: 0005_schedules
Revises: 0004_factory
Create Date: 2026-12-01 19:10:00.000000
"""

from __future__ import annotations

revision = "0005_schedules"
down_revision = "0004_factory"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
