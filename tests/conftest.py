"""The real stack for end-to-end, CLI and API tests: anvil, Kubo, Redis, Docker, a Celery worker
and the bridge, started once per session by `DevStack` on free ports (only if a test asks for it).
A component that cannot start fails the session (no skips)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.config import BridgeSettings
from devstack.stack import DevStack
from tests.e2e.client import Requester, settings_for
from tests.services import postgres


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    state = Path(tmp_path_factory.mktemp("devstack"))
    devstack = DevStack(state, block_time=1, preferred_ports=False,
                        worker_env={"COD_INPUT_FETCH_TIMEOUT_S": "10"})
    devstack.start()
    saved = dict(os.environ)
    os.environ.update(devstack.env)
    try:
        yield devstack
    finally:
        os.environ.clear()
        os.environ.update(saved)
        devstack.stop()


@pytest.fixture(scope="session")
def settings(stack: DevStack) -> BridgeSettings:
    return settings_for(stack.env)


@pytest.fixture(scope="session")
def requester(settings: BridgeSettings) -> Requester:
    return Requester(settings)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL cluster for the session (the ledger's production database)."""
    with postgres() as url:
        yield url
