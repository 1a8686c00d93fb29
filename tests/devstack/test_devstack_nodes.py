"""`cod devstack --nodes 2`: two compute nodes on loopback, each with its own Kubo and worker.
Data pinned with `cod data pin --node node-2` (a local file, added first, and a CID published
elsewhere) is held by node 2 only, and a job over it runs there."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from bridge.chain import JobStatus
from bridge.ledger import Ledger
from cod.cli.data import node_ipfs_apis
from protocol.ipfs import KuboClient
from protocol.nodes import DataIndex
from tests.devstack.procs import COD, clean_env, devstack
from tests.e2e.client import Requester, settings_for
from tests.locality.test_locality import count_job

MB = 1_000_000


def cod(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([COD, *args], env={**clean_env(), **env}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"cod {' '.join(args)}: {done.stderr}"
    return done.stdout


def test_data_pinned_on_node_2_brings_its_jobs_to_node_2(tmp_path: Path) -> None:
    dataset = tmp_path / "dataset.bin"
    dataset.write_bytes(os.urandom(4 * MB))
    with devstack(tmp_path / "stack", "--nodes", "2",
                  env={"COD_HEARTBEAT_INTERVAL_S": "1", "COD_LOCALITY_WAIT_S": "30"}) as stack:
        env = stack.env()
        apis = node_ipfs_apis(env["COD_NODE_IPFS_APIS"])
        assert set(apis) == {"node-1", "node-2"}
        assert len({*apis.values(), env["COD_IPFS_API"]}) == 3  # a Kubo each, and the stack's
        assert any("cod data pin --node node-2" in line for line in stack.lines)

        # a local file, added on node 2's Kubo; a CID published on the stack's Kubo, pinned there
        added = cod(env, "data", "pin", "--node", "node-2", str(dataset))
        file_cid = added.split(" as ")[1].split()[0]
        published = KuboClient(env["COD_IPFS_API"]).add_bytes(os.urandom(1 * MB), "published")
        assert "on node-2" in cod(env, "data", "pin", "--node", "node-2", published)
        listed = json.loads(cod(env, "data", "ls", "--node", "node-2", "--output", "json"))
        assert {"cid": file_cid, "bytes": 4 * MB} in listed["data"]
        assert {"cid": published, "bytes": 1 * MB} in listed["data"]
        node_1 = KuboClient(apis["node-1"])
        assert not node_1.is_pinned(file_cid) and not node_1.is_pinned(published)

        index = DataIndex(env["COD_BROKER_URL"])
        deadline = time.monotonic() + 60
        while not {file_cid, published} <= set(index.holdings(["node-2"]).get("node-2", {})):
            assert time.monotonic() < deadline, "node-2 never advertised its data"
            time.sleep(0.5)

        requester = Requester(settings_for(env))
        job_id = requester.request(count_job(file_cid, published))
        outcome = requester.wait(job_id, timeout=180)
        assert outcome.job.status == JobStatus.COMPLETED, outcome.reason
        assert requester.result_file(outcome.job.result_cid, "stdout").strip() == str(5 * MB)
        ledger = Ledger(env["COD_LEDGER_URL"], migrate=False)
        job = ledger.get(requester.w3.eth.chain_id, env["COD_CONTRACT"], job_id)
        assert job is not None and job.node == "node-2"
        events = [f"{e.kind}: {e.detail}" for e in ledger.timeline(
            requester.w3.eth.chain_id, env["COD_CONTRACT"], job_id)]
        assert any("routed to its data: node-2" in e for e in events), events
        assert any("inputs local, 0 bytes fetched" in e for e in events), events
