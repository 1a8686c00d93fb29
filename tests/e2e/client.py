"""What a dApp does in the tests: request jobs from a funded key and wait for their outcome."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import httpx
from web3.logs import DISCARD

from bridge.chain import JobStatus, OnChainJob, TxSender, connect, job_manager, read_job
from bridge.config import BridgeSettings
from bridge.terms import result_digest
from protocol.ipfs import KuboClient
from protocol.spec import JobSpec


@dataclass(frozen=True)
class SettledJob:
    """A settled job: its chain view and, once completed, its result from `JobCompleted` (v2:
    the view holds only the result's digest, checked here against the event)."""

    view: OnChainJob
    result_cid: str = ""
    exit_code: int = 0
    result: bytes = b""

    @property
    def status(self) -> JobStatus:
        return self.view.status


@dataclass(frozen=True)
class Outcome:
    job: SettledJob
    completed: list[dict[str, Any]]  # JobCompleted events of the job (must be 0 or 1)
    failed: list[dict[str, Any]]  # JobFailed events of the job

    @property
    def reason(self) -> str:
        return str(self.failed[0]["args"]["reason"]) if self.failed else ""


def settings_for(env: dict[str, str]) -> BridgeSettings:
    """Bridge settings for a stack's `COD_*` variables (as `cod devstack` prints them)."""
    return BridgeSettings(**{k.removeprefix("COD_").lower(): v for k, v in env.items()})


class Requester:
    def __init__(self, settings: BridgeSettings) -> None:
        self.w3 = connect(settings.rpc_url)
        self.sender = TxSender(self.w3, settings.require_key())
        self.manager = job_manager(self.w3, settings.require_contract())
        self.kubo = KuboClient(settings.ipfs_api)
        self.fee = int(self.manager.functions.minFee().call())

    def request(self, spec: JobSpec | str, consumer: str = "0x" + "0" * 40, gas: int = 0) -> int:
        text = spec if isinstance(spec, str) else spec.to_json()
        fee = int(self.manager.functions.quoteFee(consumer, gas, 1).call())
        receipt = self.sender.transact(
            self.manager.functions.requestJob(text, consumer, gas), value=fee)
        events = self.manager.events.JobRequested().process_receipt(receipt, errors=DISCARD)
        return int(events[0]["args"]["jobId"])

    def wait(self, job_id: int, timeout: float = 120.0) -> Outcome:
        """Wait until the job is settled on-chain (no longer open: requested, claimed or
        revealing); return its state, its result and its events."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = read_job(self.manager, job_id)
            if not job.status.open:
                completed = self.events("JobCompleted", job_id)
                settled = SettledJob(job)
                if job.status == JobStatus.COMPLETED and completed:
                    args = completed[-1]["args"]
                    settled = SettledJob(job, str(args["resultCid"]), int(args["exitCode"]),
                                         bytes(args["result"]))
                    assert result_digest(settled.result_cid, settled.exit_code,
                                         settled.result) == job.digest, "result digest mismatch"
                return Outcome(settled, completed, self.events("JobFailed", job_id))
            time.sleep(0.25)
        raise TimeoutError(f"job {job_id} still open ({read_job(self.manager, job_id).status.name}) "
                           f"after {timeout:.0f} s")

    def wait_status(self, job_id: int) -> JobStatus:
        return read_job(self.manager, job_id).status

    def events(self, name: str, job_id: int) -> list[dict[str, Any]]:
        event = getattr(self.manager.events, name)
        return list(event.get_logs(from_block=0, argument_filters={"jobId": job_id}))

    def cid_nobody_has(self) -> str:
        """The CIDv1 of random bytes, computed by Kubo without storing them."""
        response = httpx.post(f"{self.kubo.api_url}/api/v0/add",
                              params={"cid-version": "1", "only-hash": "true"},
                              files={"file": ("x", os.urandom(64))})
        response.raise_for_status()
        return str(response.json()["Hash"])

    def result_file(self, cid: str, path: str) -> str:
        return self.kubo.cat(f"{cid}/{path}").decode()
