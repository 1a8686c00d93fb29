"""Several compute nodes behind one bridge, against the real chain, Redis, Kubo and Docker: node
listing, a node killed mid-job, a job no node can serve, a Kubo outage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import docker

from bridge.chain import JobStatus, read_job
from bridge.ledger import Ledger, job_key
from devstack.images import BUSYBOX_IMAGE
from devstack.stack import DevStack
from protocol.ipfs import KuboClient
from protocol.nodes import list_nodes
from protocol.spec import JobSpec
from tests.e2e.client import Requester, settings_for
from tests.executor.conftest import CLUSTER_NODES

T = TypeVar("T")


def wait_until(what: str, probe: Callable[[], T], timeout: float = 60) -> T:
    """Poll `probe` until it returns something truthy, or fail naming `what` at the deadline.
    Every wait in this file is one of these: a loaded machine changes how long, never whether."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.2)


def live_node_ids(stack: DevStack) -> set[str]:
    return {n.node_id for n in list_nodes(stack.env["COD_BROKER_URL"])}


def requester_for(stack: DevStack) -> Requester:
    return Requester(settings_for(stack.env))


def ledger_job(stack: DevStack, requester: Requester, job_id: int) -> tuple[Ledger, str]:
    settings = settings_for(stack.env)
    return Ledger(settings.ledger_url), job_key(requester.w3.eth.chain_id,
                                                  stack.env["COD_CONTRACT"], job_id)


def shell(script: str, **fields: object) -> JobSpec:
    return JobSpec(image=BUSYBOX_IMAGE, entrypoint=["sh", "-c", script], cache=False,
                   **fields)  # type: ignore[arg-type]


def test_node_list_shows_every_live_node(cluster: DevStack) -> None:
    wait_until("every node's first heartbeat", lambda: live_node_ids(cluster) >= set(CLUSTER_NODES))
    output = subprocess.run(
        [sys.executable, "-m", "cod.cli", "node", "list", "--output", "json"], check=True,
        capture_output=True, text=True, env={**os.environ, **cluster.env}).stdout
    nodes = {n["id"]: n for n in json.loads(output)}
    assert set(nodes) == set(CLUSTER_NODES)
    for node_id, node in nodes.items():
        assert "cod.cpu" in node["queues"] and f"cod.node.{node_id}" in node["queues"]
        assert node["cpus"] > 0 and node["memoryBytes"] > 0
        assert node["running"] == [] and node["concurrency"] == 1


def test_a_node_killed_mid_job_its_job_reruns_elsewhere_once(cluster: DevStack) -> None:
    requester = requester_for(cluster)
    # longer than the visibility timeout (6 s): a live node's job must not be delivered twice
    job_id = requester.request(shell("sleep 10; echo survived > /outputs/r.txt"))
    ledger, key = ledger_job(cluster, requester, job_id)
    victim = _node_running(cluster, f"{key}:1", timeout=60)
    client = docker.from_env()
    wait_until(f"{victim}'s container", lambda: _containers(client, victim), timeout=30)
    cluster.kill_worker(victim)  # while its container runs
    assert len(_containers(client, victim)) == 1  # Docker keeps the dead node's container

    outcome = requester.wait(job_id, timeout=120)
    assert outcome.job.status == JobStatus.COMPLETED
    assert requester.result_file(outcome.job.result_cid, "outputs/r.txt") == "survived\n"
    assert len(outcome.completed) == 1  # exactly one on-chain result
    job = ledger.get(requester.w3.eth.chain_id, cluster.env["COD_CONTRACT"], job_id)
    assert job is not None and job.node not in (None, victim)
    survivors = [n for n in CLUSTER_NODES if n != victim]
    starts = sum((cluster.logs / f"worker-{n}.log").read_text().count(f"job {key}: starting")
                 for n in survivors)
    assert starts == 1

    cluster.start_worker(victim)  # the node comes back: it removes what it left behind
    wait_until(f"{victim} removing its dead container", lambda: _containers(client, victim) == [])
    # its first heartbeat comes after "ready": read the node list once it has
    wait_until(f"{victim} back in the node list", lambda: victim in live_node_ids(cluster))


def test_a_job_no_node_can_serve_waits_visibly_then_fails(cluster: DevStack) -> None:
    requester = requester_for(cluster)
    job_id = requester.request(shell("nvidia-smi", resources={"gpu": 1}, queue_timeout=4))
    outcome = requester.wait(job_id, timeout=60)
    assert outcome.job.status == JobStatus.FAILED
    assert outcome.reason.startswith(
        "no node could run the job within its queue timeout of 4 s: "
        "no live node serves queue cod.gpu")
    ledger, _key = ledger_job(cluster, requester, job_id)
    events = [e.kind for e in ledger.timeline(requester.w3.eth.chain_id,
                                              cluster.env["COD_CONTRACT"], job_id)]
    assert events[:3] == ["requested", "waiting", "rejected"]


def test_kubo_down_for_a_while_delays_the_job_but_does_not_lose_it(cluster: DevStack) -> None:
    requester = requester_for(cluster)
    cid = KuboClient(cluster.env["COD_IPFS_API"]).add_bytes(b"still here\n", "in.txt")
    logs = [cluster.logs / f"worker-{n}.log" for n in CLUSTER_NODES]
    offsets = [log.stat().st_size if log.exists() else 0 for log in logs]
    cluster.stop_process("kubo")
    try:
        job_id = requester.request(shell("cat /inputs/in.txt", inputs=[
            {"source": f"ipfs://{cid}", "target": "/inputs/in.txt"}]))

        def retried() -> bool:  # a node met the outage and scheduled a retry (Celery's line)
            return any(b"Retry in" in log.read_bytes()[offset:] for log, offset in zip(
                logs, offsets, strict=True) if log.exists())

        wait_until("a node retrying the job while Kubo is down", retried)
        assert read_job(requester.manager, job_id).status == JobStatus.CLAIMED  # ours, not failed
    finally:
        cluster.start_kubo()
    outcome = requester.wait(job_id, timeout=120)
    assert outcome.job.status == JobStatus.COMPLETED
    assert requester.result_file(outcome.job.result_cid, "stdout") == "still here\n"


def _node_running(stack: DevStack, task_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node in list_nodes(stack.env["COD_BROKER_URL"]):
            if task_id in node.running:
                return node.node_id
        time.sleep(0.2)
    raise TimeoutError(f"no node started {task_id} within {timeout:.0f} s")


def _containers(client: docker.DockerClient, node_id: str) -> list[object]:
    return list(client.containers.list(all=True, filters={"label": f"cod.node={node_id}"}))
