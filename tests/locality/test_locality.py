"""Send the code to the data: three compute nodes, each with its own Kubo; jobs run where their
inputs are pinned, and move no bytes; locality never costs availability."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.chain import JobStatus
from bridge.ledger import Ledger
from devstack.images import BUSYBOX_IMAGE
from devstack.stack import DevStack
from protocol.ipfs import KuboClient
from protocol.nodes import DataIndex
from protocol.spec import InputSource, JobSpec
from tests.e2e.client import Requester, settings_for

NODES = ("node-a", "node-b", "node-c")
MB = 1_000_000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(Path(tmp_path_factory.mktemp("locality")), block_time=1,
                     preferred_ports=False, with_worker=False, nodes=NODES,
                     bridge_env={"COD_RECONCILE_INTERVAL_S": "1", "COD_LOCALITY_WAIT_S": "15"},
                     worker_env={"COD_HEARTBEAT_INTERVAL_S": "1"})
    stack.start()
    try:
        for node in NODES:
            stack.start_worker(node, own_kubo=True)
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def requester(cluster: DevStack) -> Requester:
    env = cluster.env
    return Requester(settings_for(env))


def kubo(cluster: DevStack, node: str) -> KuboClient:
    return KuboClient(cluster.kubo_apis[f"nodekubo-{node}"], timeout=300)


def received(cluster: DevStack) -> dict[str, int]:
    return {node: kubo(cluster, node).bitswap_received() for node in NODES}


def hold(cluster: DevStack, node: str, size: int) -> str:
    """Pin `size` random bytes on `node` only; wait until its heartbeat advertises them."""
    cid = kubo(cluster, node).add_bytes(os.urandom(size), "dataset")
    index = DataIndex(cluster.env["COD_BROKER_URL"])
    deadline = time.monotonic() + 30
    while cid not in index.holdings([node]).get(node, {}):
        assert time.monotonic() < deadline, f"{node} never advertised {cid}"
        time.sleep(0.5)
    return cid


def count_job(*cids: str, sleep: int = 0) -> JobSpec:
    inputs = [InputSource(source=f"ipfs://{cid}", target=f"/inputs/{i}") for i, cid in
              enumerate(cids)]
    script = (f"sleep {sleep}; " if sleep else "") + "cat /inputs/* | wc -c"
    return JobSpec(image=BUSYBOX_IMAGE, entrypoint=["sh", "-c", script], inputs=inputs,
                   cache=False, timeout=120)


def ran_on(cluster: DevStack, requester: Requester, job_id: int) -> str:
    ledger = Ledger(cluster.env["COD_LEDGER_URL"], migrate=False)
    job = ledger.get(requester.w3.eth.chain_id, cluster.env["COD_CONTRACT"], job_id)
    assert job is not None and job.node is not None
    return job.node


def timeline(cluster: DevStack, requester: Requester, job_id: int) -> list[str]:
    ledger = Ledger(cluster.env["COD_LEDGER_URL"], migrate=False)
    return [f"{e.kind}: {e.detail}" for e in ledger.timeline(
        requester.w3.eth.chain_id, cluster.env["COD_CONTRACT"], job_id)]


def test_jobs_run_where_their_data_is_and_move_no_bytes(cluster: DevStack,
                                                        requester: Requester) -> None:
    dataset = hold(cluster, "node-b", 50 * MB)
    before = received(cluster)
    # one after another: ten queued at once on B's one slot would outwait COD_LOCALITY_WAIT_S on a
    # loaded machine and rightly be re-routed (that is test_busy_data_node_does_not_hold_a_job_back)
    jobs = []
    for _ in range(10):
        job_id = requester.request(count_job(dataset))
        outcome = requester.wait(job_id, timeout=180)
        assert outcome.job.status == JobStatus.COMPLETED
        assert requester.result_file(outcome.job.result_cid, "stdout").strip() == str(50 * MB)
        jobs.append(job_id)
    after = received(cluster)
    assert {ran_on(cluster, requester, j) for j in jobs} == {"node-b"}
    assert after == before, f"bytes moved by bitswap: {before} → {after}"
    events = timeline(cluster, requester, jobs[0])
    assert any("routed to its data: node-b holds 50.0 MB" in e for e in events), events
    assert any("inputs local, 0 bytes fetched" in e for e in events), events


def test_data_node_down_the_job_runs_elsewhere_and_comes_back(cluster: DevStack,
                                                             requester: Requester) -> None:
    dataset = hold(cluster, "node-b", 20 * MB)
    cluster.stop_process("worker-node-b")  # B's worker stops; its Kubo still serves the data
    try:
        job_id = requester.request(count_job(dataset))
        outcome = requester.wait(job_id, timeout=180)
        assert outcome.job.status == JobStatus.COMPLETED
        assert requester.result_file(outcome.job.result_cid, "stdout").strip() == str(20 * MB)
        node = ran_on(cluster, requester, job_id)
        assert node in {"node-a", "node-c"}
        assert any("inputs not local" in e for e in timeline(cluster, requester, job_id))
    finally:
        cluster.start_worker("node-b", own_kubo=True)
    deadline = time.monotonic() + 30  # wait for B's heartbeat
    while time.monotonic() < deadline:
        back = requester.request(count_job(dataset))
        assert requester.wait(back, timeout=180).job.status == JobStatus.COMPLETED
        if ran_on(cluster, requester, back) == "node-b":
            return
    pytest.fail("routing did not return to node-b")


def cod(cluster: DevStack, node: str, *args: str) -> str:
    env = {**os.environ, **cluster.env, "COD_NODE_ID": node,
           "COD_IPFS_API": cluster.kubo_apis[f"nodekubo-{node}"]}
    done = subprocess.run([sys.executable, "-m", "cod.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_operator_pins_a_dataset_with_the_cli(cluster: DevStack, requester: Requester) -> None:
    # the dataset is published elsewhere (the stack's own Kubo); node-a's operator pins it
    cid = KuboClient(cluster.env["COD_IPFS_API"]).add_bytes(os.urandom(3 * MB), "published")
    assert "pinned" in cod(cluster, "node-a", "data", "pin", cid)
    listed = json.loads(cod(cluster, "node-a", "data", "ls", "--output", "json"))
    assert {"cid": cid, "bytes": 3 * MB} in listed["data"]
    deadline = time.monotonic() + 30
    while True:
        nodes = json.loads(cod(cluster, "node-a", "node", "list", "--output", "json"))
        node_a = next(n for n in nodes if n["id"] == "node-a")
        if node_a["dataBytes"] >= 3 * MB:
            break
        assert time.monotonic() < deadline, node_a
        time.sleep(1)
    job_id = requester.request(count_job(cid))
    assert requester.wait(job_id, timeout=180).job.status == JobStatus.COMPLETED
    assert ran_on(cluster, requester, job_id) == "node-a"
    cod(cluster, "node-a", "data", "unpin", cid)
    assert cid not in cod(cluster, "node-a", "data", "ls")


def test_split_inputs_go_where_most_bytes_are(cluster: DevStack, requester: Requester) -> None:
    small = hold(cluster, "node-a", 5 * MB)
    large = hold(cluster, "node-c", 20 * MB)
    job_id = requester.request(count_job(small, large))
    outcome = requester.wait(job_id, timeout=180)
    assert outcome.job.status == JobStatus.COMPLETED
    assert requester.result_file(outcome.job.result_cid, "stdout").strip() == str(25 * MB)
    assert ran_on(cluster, requester, job_id) == "node-c"


def test_busy_data_node_does_not_hold_a_job_back(cluster: DevStack, requester: Requester
                                                 ) -> None:
    dataset = hold(cluster, "node-b", 1 * MB)
    busy = requester.request(count_job(dataset, sleep=25))  # takes B's only slot
    time.sleep(3)
    waiting = requester.request(count_job(dataset))
    outcome = requester.wait(waiting, timeout=120)
    assert outcome.job.status == JobStatus.COMPLETED
    assert ran_on(cluster, requester, waiting) in {"node-a", "node-c"}
    assert any(e.startswith("re-routed: node-b did not start it within 15 s")
               for e in timeline(cluster, requester, waiting))
    assert requester.wait(busy, timeout=120).job.status == JobStatus.COMPLETED
    assert len(requester.events("JobCompleted", waiting)) == 1
