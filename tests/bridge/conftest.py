from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import Chain, anvil_chain


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The ledger's two supported databases: every test using this runs on both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    base: str = request.getfixturevalue("postgres_url")
    # a fresh database per test
    import sqlalchemy

    name = f"t_{abs(hash(request.node.nodeid)) % 10**10}"
    engine = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return base.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def chain() -> Iterator[Chain]:
    with anvil_chain() as c:
        yield c
