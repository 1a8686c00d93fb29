"""Fixtures for the executor's tests: real Docker, Kubo and Redis (started by `DevStack` without a
chain), and a `JobRunner` wired to them exactly as a worker wires it. A service that cannot start
fails the session (no skips)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from devstack.images import BUSYBOX_IMAGE
from devstack.stack import DevStack
from executor.config import WorkerSettings
from executor.runner import JobRunner
from executor.tasks import build_runner
from executor.volumes import clean_work_dir
from protocol.ipfs import KuboClient
from protocol.outcome import JobOutcome
from protocol.spec import JobSpec

NODE = "exec-test"


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(Path(tmp_path_factory.mktemp("services")), with_chain=False,
                     with_bridge=False, with_worker=False, preferred_ports=False)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def kubo(services: DevStack) -> KuboClient:
    return KuboClient(services.env["COD_IPFS_API"])


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    return docker.from_env()


def worker_settings(services: DevStack, work_dir: Path, **overrides: Any) -> WorkerSettings:
    fields: dict[str, Any] = {
        "broker_url": services.env["COD_BROKER_URL"], "ipfs_api": services.env["COD_IPFS_API"],
        "node_id": NODE, "work_dir": work_dir, "input_fetch_timeout_s": 10,
        "log_limit": "1Mi", "pids_limit": 64, "publish_retry_s": 60, "allow_network": False,
    }
    fields.update(overrides)
    return WorkerSettings(**fields)


RunnerFactory = Callable[..., JobRunner]


@pytest.fixture
def make_runner(services: DevStack, tmp_path: Path) -> Iterator[RunnerFactory]:
    made: list[JobRunner] = []

    def make(**overrides: Any) -> JobRunner:
        made.append(build_runner(worker_settings(services, tmp_path / "work", **overrides)))
        return made[-1]
    yield make
    for runner in made:  # as a worker's shutdown and next start do: nothing is left mounted
        runner.close()
    clean_work_dir(tmp_path / "work")


@pytest.fixture
def runner(make_runner: RunnerFactory) -> JobRunner:
    return make_runner()


_counter = 0


def run(runner: JobRunner, spec: JobSpec | str) -> JobOutcome:
    """Run a spec under a fresh job key."""
    global _counter
    _counter += 1
    text = spec if isinstance(spec, str) else spec.to_json()
    return runner.run(f"test:{_counter}", text)


def sh(script: str, **fields: Any) -> JobSpec:
    fields.setdefault("cache", False)
    return JobSpec(image=BUSYBOX_IMAGE, entrypoint=["sh", "-c", script], **fields)


CLUSTER_NODES = ("node-a", "node-b", "node-c")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """The whole stack with three workers of distinct node ids. Short heartbeats and visibility
    timeout, so a killed node's job comes back within seconds."""
    stack = DevStack(Path(tmp_path_factory.mktemp("cluster")), preferred_ports=False,
                     with_worker=False, nodes=CLUSTER_NODES,
                     worker_env={"COD_INPUT_FETCH_TIMEOUT_S": "10", "COD_HEARTBEAT_INTERVAL_S": "1",
                                 "COD_VISIBILITY_TIMEOUT_S": "6"})
    stack.start()
    try:
        for node_id in CLUSTER_NODES:
            stack.start_worker(node_id)
        yield stack
    finally:
        stack.stop()
