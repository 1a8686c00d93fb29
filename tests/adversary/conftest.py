"""The executor's fixtures (a session devstack without the bridge, Kubo, Docker, runners) for the
adversary tests that run jobs through a real runner (test_egress, test_guest, test_resources)."""

from tests.executor.conftest import (  # noqa: F401  (fixtures, found by pytest by name)
    docker_client,
    kubo,
    make_runner,
    runner,
    services,
)
