"""Unit tests of pure functions: queue routing, node fit, the GPU device request."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.placement import unservable_reason
from executor.engines.base import RunRequest
from executor.engines.docker_engine import Limits, container_args
from protocol.capacity import Capacity
from protocol.nodes import NodeInfo
from protocol.queues import queue_for, queues_for_node
from protocol.spec import JobSpec

GiB = 1024**3
LAPTOP = Capacity(cpus=2, memory=8 * GiB)
BIG = Capacity(cpus=32, memory=128 * GiB)
GPU_BOX = Capacity(cpus=16, memory=64 * GiB, gpus=2, gpu_models=("NVIDIA A100",))


def spec(**fields: object) -> JobSpec:
    return JobSpec(image="cod/busybox", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("resources", "network", "queue"), [
    ({}, "none", "cod.cpu"),
    ({"cpu": 2, "memory": "4Gi"}, "none", "cod.cpu"),
    ({"memory": "5Gi"}, "none", "cod.highmem"),
    ({"cpu": 8}, "none", "cod.highmem"),
    ({"gpu": 1}, "none", "cod.gpu"),
    ({"gpu": 1}, "full", "cod.gpu.net"),
    ({}, "full", "cod.cpu.net"),
])
def test_queue_for(resources: dict[str, object], network: str, queue: str) -> None:
    assert queue_for(spec(resources=resources, network=network)) == queue


def test_queues_for_node() -> None:
    assert queues_for_node(LAPTOP, allow_network=False) == ["cod.cpu"]
    assert queues_for_node(BIG, allow_network=False) == ["cod.cpu", "cod.highmem"]
    assert queues_for_node(GPU_BOX, allow_network=True) == [
        "cod.cpu", "cod.highmem", "cod.gpu", "cod.cpu.net", "cod.highmem.net", "cod.gpu.net"]
    assert queues_for_node(Capacity(cpus=1, memory=2 * GiB), allow_network=False) == []


def node(name: str, capacity: Capacity, allow_network: bool = False) -> NodeInfo:
    return NodeInfo(name, queues_for_node(capacity, allow_network), capacity)


def test_unservable_reason() -> None:
    nodes = [node("a", LAPTOP), node("b", BIG)]
    assert unservable_reason(spec(), nodes) is None
    assert unservable_reason(spec(resources={"memory": "100Gi"}), nodes) is None
    assert unservable_reason(spec(resources={"gpu": 1}), nodes) == (
        "no live node serves queue cod.gpu (the job needs 1 GPU(s))")
    assert unservable_reason(spec(network="full"), nodes) == (
        "no live node accepts networked jobs (queue cod.cpu.net)")
    assert unservable_reason(spec(resources={"cpu": 64}), nodes) == (
        "no live node on queue cod.highmem is large enough: the job needs 64 CPUs (node has 32)")
    assert unservable_reason(spec(), []) == (
        "no live node serves queue cod.cpu (the job needs 1 CPUs, 512Mi memory)")


def request(job: JobSpec) -> RunRequest:
    return RunRequest(name="cod-x", spec=job, mounts=[], stdout=Path("/o"), stderr=Path("/e"),
                      job_dir=Path("/j"))


def test_gpu_jobs_get_a_device_request_for_their_count() -> None:
    args = container_args(request(spec(resources={"gpu": 2})), Limits())
    [device] = args["device_requests"]
    assert (device["Driver"], device["Count"], device["Capabilities"]) == ("nvidia", 2, [["gpu"]])
    assert "device_requests" not in container_args(request(spec()), Limits())


def test_container_args_are_locked_down() -> None:
    args = container_args(request(spec(resources={"cpu": 0.5, "memory": "64Mi"})),
                          Limits(pids=99))
    assert args["network_mode"] == "none" and args["read_only"] and not args["privileged"]
    assert args["cap_drop"] == ["ALL"] and args["security_opt"] == ["no-new-privileges"]
    assert (args["pids_limit"], args["nano_cpus"], args["mem_limit"], args["memswap_limit"]) == (
        99, 500_000_000, 64 * 1024**2, 64 * 1024**2)
