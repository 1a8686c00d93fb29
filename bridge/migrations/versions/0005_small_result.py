"""the small result (≤ 256 bytes, hex) a job's outcome carries, delivered on-chain with its CID

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 03:00:00

Rows from before this revision have none: the empty result (what v1 delivered).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("result", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("result")
