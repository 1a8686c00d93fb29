"""replicated jobs: the salt of our commitment, kept before the commitment is sent

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 04:10:00

The salt must outlive a crash between `commitResult` and `revealResult`: without it our
commitment cannot be opened and the contract slashes us for not revealing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("salt", sa.String(66), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("salt")
