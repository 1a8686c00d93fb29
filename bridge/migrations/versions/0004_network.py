"""JobManager v2 (issue 13): the rest of a request's terms, and our claim on a job

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 02:00:00

The v2 contract stores only a digest of a request's `Terms`; every later call quotes them back, so
the ledger keeps each field (requester, consumer, fee, deadline, callback gas and request hash were
there already). Rows from before this revision are v1 requests: replicas 1, lease 0, unrestricted
(a v1 contract's jobs are not claimed).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("replicas", sa.Integer(), nullable=False,
                                      server_default="1"))
        batch_op.add_column(sa.Column("lease_s", sa.BigInteger(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("restricted", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column("claim_tx_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("lease_end", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("claim_attempts", sa.Integer(), nullable=False,
                                      server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("claim_attempts")
        batch_op.drop_column("lease_end")
        batch_op.drop_column("claim_tx_id")
        batch_op.drop_column("restricted")
        batch_op.drop_column("lease_s")
        batch_op.drop_column("replicas")
