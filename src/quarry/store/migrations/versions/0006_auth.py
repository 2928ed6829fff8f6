"""tokens, admission (slot reserved for issue 7)

Revision ID: 0006_auth
Revises: 0005_schedules
Create Date: 2026-12-01 19:10:00.000000
"""

from __future__ import annotations

revision = "0006_auth"
down_revision = "0005_schedules"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
