from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services import postgres


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL cluster for the session (the ledger's production database)."""
    with postgres() as url:
        yield url
