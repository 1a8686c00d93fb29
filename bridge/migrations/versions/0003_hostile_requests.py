"""per-job error boundary, request binding, start times in the ledger

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 21:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("callback_gas_limit", sa.BigInteger(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("request_hash", sa.String(length=66), nullable=True))
        batch_op.add_column(sa.Column("started_at", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("errors", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("not_before", sa.Float(), nullable=False,
                                      server_default="0"))
        batch_op.create_index("ix_jobs_due", ["chain_id", "contract", "state", "not_before"])
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_cost", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("not_before", sa.Float(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("tries", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_column("tries")
        batch_op.drop_column("not_before")
        batch_op.drop_column("max_cost")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_due")
        batch_op.drop_column("not_before")
        batch_op.drop_column("errors")
        batch_op.drop_column("started_at")
        batch_op.drop_column("request_hash")
        batch_op.drop_column("callback_gas_limit")
