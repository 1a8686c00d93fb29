"""A stack of its own for chaos tests (they kill and restart its parts), with its ledger on
PostgreSQL so the full flow is exercised on both supported databases (the e2e stack uses SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import DevStack, free_port
from tests.e2e.client import Requester, settings_for


@pytest.fixture(scope="session")
def chaos_stack(tmp_path_factory: pytest.TempPathFactory, postgres_url: str
                ) -> Iterator[DevStack]:
    stack = DevStack(Path(tmp_path_factory.mktemp("chaos")), block_time=1,
                     preferred_ports=False, ledger_url=postgres_url,
                     bridge_env={"COD_RECONCILE_INTERVAL_S": "1", "COD_STALL_GRACE_S": "10",
                                 "COD_METRICS_PORT": str(free_port())})
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def chaos_requester(chaos_stack: DevStack) -> Requester:
    env = chaos_stack.env
    return Requester(settings_for(env))
