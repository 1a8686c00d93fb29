"""Alembic environment: runs migrations on the connection the ledger hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from bridge.ledger import Base

target_metadata = Base.metadata
connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` command line: COD_LEDGER_URL or the sqlalchemy.url option
    import os

    url = os.environ.get("COD_LEDGER_URL") or context.config.get_main_option("sqlalchemy.url")
    assert url, "set COD_LEDGER_URL"
    with create_engine(url).begin() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True)
        context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True)
    context.run_migrations()
