"""Chaos against the real stack: each test asserts that every job ends with exactly one on-chain
result, whatever was killed, restarted or cut while the jobs flowed."""

from __future__ import annotations

import os
import random
import threading
import time

from sqlalchemy import func, select

from bridge.chain import JobStatus
from bridge.ledger import JobEvent, Ledger
from bridge.timeline import EventKind
from devstack.images import BUSYBOX_IMAGE
from devstack.stack import DevStack
from protocol.spec import JobSpec
from tests.e2e.client import Requester
from tests.services import TcpProxy

# tens of jobs in the suite; `COD_CHAOS_JOBS=200 .venv/bin/pytest tests/chaos -k killed` soaks longer
CHAOS_JOBS = int(os.environ.get("COD_CHAOS_JOBS", "30"))


def echo(n: int, sleep: float = 0) -> JobSpec:
    script = f"sleep {sleep}; echo job-{n}" if sleep else f"echo job-{n}"
    return JobSpec(image=BUSYBOX_IMAGE, entrypoint=["sh", "-c", script], timeout=60)


def assert_each_fulfilled_once(requester: Requester, stack: DevStack, jobs: dict[int, int],
                               timeout: float = 300) -> None:
    for job_id, n in jobs.items():
        outcome = requester.wait(job_id, timeout=timeout)
        assert outcome.job.status == JobStatus.COMPLETED, (job_id, outcome.reason)
        assert len(outcome.completed) == 1, f"job {job_id} fulfilled {len(outcome.completed)}×"
        assert requester.result_file(outcome.job.result_cid, "stdout") == f"job-{n}\n"
    # the bridge's own books agree: one confirmed fulfilment per job, once it has seen the
    # receipts (it may lag the chain by a loop)
    ledger = Ledger(stack.env["COD_LEDGER_URL"], migrate=False)
    deadline = time.monotonic() + 60
    while True:
        per_job = fulfilments_in_ledger(ledger)
        if all(per_job.get(job_id) == 1 for job_id in jobs) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {job_id: per_job.get(job_id) for job_id in jobs} == dict.fromkeys(jobs, 1)


def fulfilments_in_ledger(ledger: Ledger) -> dict[int, int]:
    """Per job, how many confirmed fulfilments the bridge recorded (`fulfilled` events: one per
    confirmed fulfillJob, or per job of a confirmed fulfillBatch that settled it)."""
    with ledger.session() as s:
        rows = s.execute(select(JobEvent.job_id, func.count()).where(
            JobEvent.kind == EventKind.FULFILLED).group_by(JobEvent.job_id))
        return {int(job_id): int(count) for job_id, count in rows}


def test_bridge_killed_at_random_points(chaos_stack: DevStack, chaos_requester: Requester
                                        ) -> None:
    rng = random.Random(7)
    jobs: dict[int, int] = {}
    stop = threading.Event()

    def killer() -> None:
        while not stop.is_set():
            time.sleep(rng.uniform(0.3, 2.5))
            chaos_stack.stop_process("bridge", kill=True)
            chaos_stack.start_bridge()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        for n in range(CHAOS_JOBS):
            jobs[chaos_requester.request(echo(n))] = n
            time.sleep(rng.uniform(0, 0.3))
        time.sleep(5)
    finally:
        stop.set()
        thread.join()
    assert_each_fulfilled_once(chaos_requester, chaos_stack, jobs)


def test_redis_restarted_without_persistence(chaos_stack: DevStack, chaos_requester: Requester
                                             ) -> None:
    jobs = {chaos_requester.request(echo(n, sleep=1)): n for n in range(8)}
    chaos_requester.wait(next(iter(jobs)), timeout=120)  # some work is under way
    chaos_stack.restart_redis()  # every queued task and stored result is gone
    assert_each_fulfilled_once(chaos_requester, chaos_stack, jobs)


def test_rpc_outage_then_catch_up(chaos_stack: DevStack, chaos_requester: Requester) -> None:
    anvil_port = int(chaos_stack.env["COD_RPC_URL"].rsplit(":", 1)[1])
    proxy = TcpProxy(anvil_port)
    chaos_stack.stop_process("bridge")
    chaos_stack.start_bridge({"COD_RPC_URL": proxy.url})
    try:
        proxy.cut()
        outage_started = time.monotonic()
        jobs = {chaos_requester.request(echo(n)): n for n in range(5)}  # straight to anvil
        time.sleep(max(0.0, 30 - (time.monotonic() - outage_started)))
        for job_id in jobs:  # nothing could be fulfilled without the bridge's RPC
            assert chaos_requester.wait_status(job_id) == JobStatus.REQUESTED
        proxy.resume()
        assert_each_fulfilled_once(chaos_requester, chaos_stack, jobs)
    finally:
        chaos_stack.stop_process("bridge")
        chaos_stack.start_bridge()
        proxy.cut()
