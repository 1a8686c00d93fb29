"""A reorg shallower than the bridge's confirmations never reaches it; and what an operator sees:
Prometheus metrics and JSON logs carrying the job id."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hexbytes import HexBytes
from sqlalchemy import select

from bridge.chain import JobStatus
from bridge.ledger import Job, Ledger
from devstack.images import BUSYBOX_IMAGE
from devstack.stack import DevStack
from protocol.spec import JobSpec
from tests.e2e.client import Requester

CONFIRMATIONS = 3


def rpc(requester: Requester, method: str, *params: object) -> object:
    response = requester.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in response, response
    return response.get("result")


@pytest.fixture
def manual_mining(chaos_stack: DevStack, chaos_requester: Requester) -> Iterator[None]:
    """Blocks only when the test says so, and a bridge waiting for CONFIRMATIONS blocks."""
    rpc(chaos_requester, "evm_setIntervalMining", 0)
    rpc(chaos_requester, "evm_setAutomine", True)
    chaos_stack.stop_process("bridge")
    chaos_stack.start_bridge({"COD_CONFIRMATIONS": str(CONFIRMATIONS)})
    try:
        yield
    finally:
        chaos_stack.stop_process("bridge")
        chaos_stack.start_bridge()
        rpc(chaos_requester, "evm_setIntervalMining", 1)


def ledger_tx_hashes(stack: DevStack) -> set[str]:
    ledger = Ledger(stack.env["COD_LEDGER_URL"], migrate=False)
    with ledger.session() as s:
        return {job.tx_hash for job in s.scalars(select(Job))}


def job(text: str) -> JobSpec:
    return JobSpec(image=BUSYBOX_IMAGE, entrypoint=["sh", "-c", f"echo {text}"])


@pytest.mark.usefixtures("manual_mining")
def test_shallow_reorg_is_never_seen_and_a_reincluded_request_runs_once(
        chaos_stack: DevStack, chaos_requester: Requester) -> None:
    # a request that vanishes before it has CONFIRMATIONS blocks on top
    snapshot = rpc(chaos_requester, "evm_snapshot")
    vanished_id = chaos_requester.request(job("vanished"))
    vanished_tx = chaos_requester.events("JobRequested", vanished_id)[0]["transactionHash"]
    rpc(chaos_requester, "anvil_mine", hex(CONFIRMATIONS - 1))
    rpc(chaos_requester, "evm_revert", snapshot)
    chaos_requester.sender._nonce = None
    rpc(chaos_requester, "anvil_mine", hex(CONFIRMATIONS + 3))

    # a request that is reorged out of its block and mined again in the new chain
    kept_id = chaos_requester.request(job("kept"))
    kept_tx = chaos_requester.events("JobRequested", kept_id)[0]["transactionHash"]
    raw = chaos_requester.w3.eth.get_raw_transaction(HexBytes(kept_tx)).to_0x_hex()
    rpc(chaos_requester, "anvil_reorg", 1, [[raw, 0]])
    for _ in range(CONFIRMATIONS + 1):
        rpc(chaos_requester, "anvil_mine", "0x1")
    outcome = chaos_requester.wait(kept_id, timeout=120)

    assert outcome.job.status == JobStatus.COMPLETED
    assert len(outcome.completed) == 1
    assert chaos_requester.result_file(outcome.job.result_cid, "stdout") == "kept\n"
    hashes = ledger_tx_hashes(chaos_stack)
    assert vanished_tx.to_0x_hex() not in hashes  # never recorded, never run, never fulfilled
    assert kept_tx.to_0x_hex() in hashes


def test_metrics_and_json_logs(chaos_stack: DevStack, chaos_requester: Requester) -> None:
    job_id = chaos_requester.request(job("observed"))
    assert chaos_requester.wait(job_id).job.status == JobStatus.COMPLETED
    port = chaos_stack.bridge_env["COD_METRICS_PORT"]
    deadline = time.monotonic() + 15  # the ledger-wide gauges refresh every few seconds
    while True:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        completed = [line for line in text.splitlines()
                     if line.startswith('cod_jobs{state="completed"}')]
        if (completed and float(completed[0].split()[-1]) >= 1) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert completed and float(completed[0].split()[-1]) >= 1
    for name in ("cod_listener_lag_blocks", "cod_queue_latency_seconds_count",
                 "cod_execution_seconds_count", "cod_pending_transactions"):
        assert name in text
    lines = [json.loads(line) for line in Path(chaos_stack.logs / "bridge.log").read_text()
             .splitlines() if line.startswith("{")]
    key_suffix = f":{job_id}"
    about_job = [line for line in lines if str(line.get("job", "")).endswith(key_suffix)]
    assert about_job, "no JSON log line carries the job id"
    assert {"time", "level", "logger", "message"} <= set(about_job[0])
