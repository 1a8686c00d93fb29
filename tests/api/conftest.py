"""A real `cod api` server (uvicorn, in its own process) over the session's stack."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.stack import DevStack
from tests.api.server import running_api


@pytest.fixture(scope="session")
def api_url(stack: DevStack) -> Iterator[str]:
    with running_api(stack) as url:
        yield url
