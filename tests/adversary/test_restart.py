"""Start times live in the ledger: a bridge restarted while a job runs on the node holding its
data does not take the job for a silent node and run it a second time elsewhere."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.chain import JobStatus
from bridge.ledger import Ledger
from devstack.images import BUSYBOX_IMAGE
from devstack.stack import DevStack
from protocol.nodes import DataIndex
from protocol.spec import InputSource, JobSpec
from tests.e2e.client import Requester, settings_for

LOCALITY_WAIT_S = 2


@pytest.fixture(scope="module")
def restart_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(Path(tmp_path_factory.mktemp("restart")), block_time=1, preferred_ports=False,
                     bridge_env={"COD_LOCALITY_WAIT_S": str(LOCALITY_WAIT_S),
                                 "COD_RECONCILE_INTERVAL_S": "0.5"})
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def wait_for(what: str, check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_restart_does_not_reroute_a_job_running_near_its_data(restart_stack: DevStack) -> None:
    requester = Requester(settings_for(restart_stack.env))
    cid = requester.kubo.add_bytes(b"data the node holds\n", "data.txt")  # pinned on node-1's Kubo
    ledger = Ledger(restart_stack.env["COD_LEDGER_URL"], migrate=False)
    chain_id, contract = int(requester.w3.eth.chain_id), str(requester.manager.address)
    spec = JobSpec(image=BUSYBOX_IMAGE, entrypoint=["sh", "-c", "sleep 8; cat /inputs/data.txt"],
                   inputs=[InputSource(source=f"ipfs://{cid}", target="/inputs/data.txt")])
    index = DataIndex(restart_stack.env["COD_BROKER_URL"])
    wait_for("node-1 to advertise the data",
             lambda: cid in index.holdings(["node-1"]).get("node-1", {}))
    job_id = requester.request(spec)

    def running() -> bool:
        job = ledger.get(chain_id, contract, job_id)
        return job is not None and job.started_at is not None

    wait_for("the job to start on its data's node", running)
    job = ledger.get(chain_id, contract, job_id)
    assert job is not None and job.routed_node == "node-1"
    restart_stack.stop_process("bridge", kill=True)
    restart_stack.start_bridge()
    outcome = requester.wait(job_id, timeout=90)
    assert outcome.job.status == JobStatus.COMPLETED, outcome.reason
    assert requester.result_file(outcome.job.result_cid, "stdout") == "data the node holds\n", (
        requester.result_file(outcome.job.result_cid, "stderr"))
    kinds = [event.kind for event in ledger.timeline(chain_id, contract, job_id)]
    assert "re-routed" not in kinds  # the restarted bridge knew it had started (ledger)
    assert len(ledger.attempts(chain_id, contract, job_id)) == 1, [
        (e.kind, e.detail) for e in ledger.timeline(chain_id, contract, job_id)]
