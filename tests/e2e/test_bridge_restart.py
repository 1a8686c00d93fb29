"""The bridge keeps its place in the ledger: a restart (even a kill -9) neither loses a request nor
acts on one twice."""

from __future__ import annotations

import time
from pathlib import Path

from bridge.chain import JobStatus
from devstack.images import BUSYBOX_IMAGE
from devstack.stack import DevStack
from protocol.spec import JobSpec
from tests.e2e.client import Requester


def echo_job(text: str) -> JobSpec:
    return JobSpec(image=BUSYBOX_IMAGE, entrypoint=["sh", "-c", f"echo {text}"])


def tasks_received(stack: DevStack, job_id: int) -> int:
    log = Path(stack.logs / "worker-node-1.log").read_text()
    contract = stack.env["COD_CONTRACT"].lower()
    return log.count(f":{contract}:{job_id}:1] received")


def test_restart_between_requests_runs_each_job_once(stack: DevStack, requester: Requester
                                                     ) -> None:
    first = requester.request(echo_job("first"))
    assert requester.wait(first).job.status == JobStatus.COMPLETED

    stack.stop_process("bridge", kill=True)
    second = requester.request(echo_job("second"))  # requested while no bridge runs
    stack.start_bridge()

    outcome = requester.wait(second)
    assert outcome.job.status == JobStatus.COMPLETED
    assert requester.result_file(outcome.job.result_cid, "stdout") == "second\n"
    assert len(requester.events("JobCompleted", first)) == 1
    assert len(requester.events("JobCompleted", second)) == 1
    assert tasks_received(stack, first) == 1
    assert tasks_received(stack, second) == 1


def test_graceful_restart_while_a_job_runs(stack: DevStack, requester: Requester) -> None:
    job = requester.request(JobSpec(image=BUSYBOX_IMAGE,
                                    entrypoint=["sh", "-c", "sleep 3; echo slow"]))
    # wait until the bridge has dispatched it, then restart the bridge under it

    deadline = time.monotonic() + 60
    while tasks_received(stack, job) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    stack.stop_process("bridge")
    stack.start_bridge()
    outcome = requester.wait(job)
    assert outcome.job.status == JobStatus.COMPLETED
    assert requester.result_file(outcome.job.result_cid, "stdout") == "slow\n"
    assert len(requester.events("JobCompleted", job)) == 1
    assert tasks_received(stack, job) == 1
