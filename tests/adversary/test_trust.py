"""The worker ↔ bridge trust boundary, attacked on the real stack.

The attacker here reached Redis. Without the password Redis refuses them outright. With it (a leaked
password, a compromised host on the broker's network) they can write the Celery result backend and
the memo cache, but hold no registered node key: a result or cache entry they write does not count.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import docker
import pytest
import redis
from celery.result import AsyncResult
from eth_account import Account

from bridge.chain import JobStatus
from bridge.ledger import Job, JobEvent, Ledger, job_key
from devstack.images import BUSYBOX_IMAGE
from devstack.stack import DevStack
from executor.cache import KEY_PREFIX, cache_key
from protocol.attestation import (
    SIGNATURE_FIELD,
    NodeIdentity,
    cache_entry_signer,
    sign_cache_entry,
    sign_outcome,
    verify_outcome,
)
from protocol.messaging import EXECUTE_JOB, JOBS_QUEUE, make_app
from protocol.nodes import Supersession
from protocol.outcome import JobOutcome
from protocol.spec import JobSpec, parse_spec
from tests.e2e.client import Requester

T = TypeVar("T")
ATTACKER = NodeIdentity.from_key(str(Account.create().key.to_0x_hex()))  # a key nobody registered


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def ledger(stack: DevStack) -> Ledger:
    return Ledger(stack.env["COD_LEDGER_URL"], migrate=False)


def job_row(stack: DevStack, requester: Requester, job_id: int) -> Job | None:
    return ledger(stack).get(int(requester.w3.eth.chain_id), stack.env["COD_CONTRACT"], job_id)


def timeline(stack: DevStack, requester: Requester, job_id: int) -> list[JobEvent]:
    return ledger(stack).timeline(int(requester.w3.eth.chain_id), stack.env["COD_CONTRACT"], job_id)


def dispatched_task(stack: DevStack, requester: Requester, job_id: int, attempt: int) -> str:
    """The task id of the job's `attempt`, once the bridge has sent it."""
    def probe() -> str | None:
        job = job_row(stack, requester, job_id)
        return job.task_id if job and job.task_id and job.task_id.endswith(f":{attempt}") else None
    return wait_for(f"attempt {attempt} of job {job_id}", probe)


def forge_success(stack: DevStack, task_id: str, job_key: str, cid: str,
                  signer: NodeIdentity | None, spec: str = "") -> None:
    """Write a SUCCESS outcome for `task_id` into the result backend, as an attacker with the Redis
    password can (signed with their own key, or not at all)."""
    fields = JobOutcome(job_key, "completed", "node-1", result_cid=cid, exit_code=0).to_dict()
    if signer is not None:
        fields[SIGNATURE_FIELD] = sign_outcome(signer.key, task_id, fields, spec=spec)
    make_app(stack.env["COD_BROKER_URL"]).backend.store_result(task_id, fields, "SUCCESS")


def slow_job(text: str, seconds: int = 4) -> JobSpec:
    """Runs long enough for the forgery to land before the real result."""
    return JobSpec(image=BUSYBOX_IMAGE, entrypoint=["sh", "-c", f"sleep {seconds}; echo {text}"],
                   cache=False, timeout=60)


def test_redis_refuses_clients_without_the_password_and_no_log_shows_it(stack: DevStack) -> None:
    url = urlsplit(stack.env["COD_BROKER_URL"])
    assert url.password and url.port
    with socket.create_connection(("127.0.0.1", url.port), timeout=5) as sock:
        sock.sendall(b"SET celery-task-meta-x forged\r\n")
        assert sock.recv(64).startswith(b"-NOAUTH")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=url.port, password="guess").ping()
    assert redis.Redis.from_url(stack.env["COD_BROKER_URL"]).ping()
    logs = {log.name: log.read_bytes() for log in Path(stack.logs).glob("*.log")}
    assert {"bridge.log", "worker-node-1.log"} <= set(logs)
    assert [name for name, text in logs.items() if url.password.encode() in text] == []


def test_a_forged_result_is_not_fulfilled_and_the_nodes_signed_result_is(
        stack: DevStack, requester: Requester) -> None:
    spec = slow_job("real").to_json()
    job_id = requester.request(spec)
    task_id = dispatched_task(stack, requester, job_id, 1)
    forged_cid = requester.kubo.add_bytes(b"the attacker's answer\n", "forged")
    forge_success(stack, task_id, task_id.rsplit(":", 1)[0], forged_cid, signer=ATTACKER, spec=spec)

    outcome = requester.wait(job_id, timeout=180)
    assert outcome.job.status == JobStatus.COMPLETED
    assert outcome.job.result_cid != forged_cid
    assert requester.result_file(outcome.job.result_cid, "stdout") == "real\n"
    events = timeline(stack, requester, job_id)
    refused = [e.detail for e in events if e.kind == "untrusted-result"]
    assert len(refused) == 1 and ATTACKER.address in refused[0]
    attested = [e.detail for e in events if e.kind == "attested"]
    assert attested == [f"signed by node key {stack.node_address('node-1')}"]


def test_a_job_whose_every_result_is_forged_is_failed_not_fulfilled(
        stack: DevStack, requester: Requester) -> None:
    job_id = requester.request(slow_job("never counted"))
    forged_cid = requester.kubo.add_bytes(b"unsigned forgery\n", "forged")
    tasks = []
    for attempt in (1, 2, 3):  # the bridge's max_attempts
        task_id = dispatched_task(stack, requester, job_id, attempt)
        forge_success(stack, task_id, task_id.rsplit(":", 1)[0], forged_cid, signer=None)
        tasks.append(task_id)

    outcome = requester.wait(job_id, timeout=180)
    for task_id in tasks:  # spare the worker the attempts nobody waits for any more
        Supersession(stack.env["COD_BROKER_URL"]).mark(task_id)
    assert outcome.job.status == JobStatus.FAILED and not outcome.completed
    assert outcome.reason == "no result signed by a registered node"
    refused = [e.detail for e in timeline(stack, requester, job_id) if e.kind == "untrusted-result"]
    assert refused == ["the result is not signed"] * 2


def test_a_task_queued_by_hand_under_a_jobs_task_id_is_refused_though_a_node_signed_it(
        stack: DevStack, requester: Requester) -> None:
    """Redis access lets anyone enqueue: the attacker has a real node run *their* spec under the
    task id the next job's first attempt will have, so the node's own signature covers the
    attacker's result. The signature binds the spec the node ran, and that is not the job's."""
    chain_id = int(requester.w3.eth.chain_id)
    next_id = int(requester.manager.functions.nextJobId().call())
    task_id = f"{job_key(chain_id, stack.env['COD_CONTRACT'], next_id)}:1"
    theirs = JobSpec(image=BUSYBOX_IMAGE, entrypoint=["sh", "-c", "echo forged"], cache=False)
    app = make_app(stack.env["COD_BROKER_URL"])
    app.send_task(EXECUTE_JOB, args=[task_id.rsplit(":", 1)[0], theirs.to_json()], task_id=task_id,
                  queue=JOBS_QUEUE)
    planted = AsyncResult(task_id, app=app)
    wait_for("the planted task's result", lambda: planted.result if planted.state == "SUCCESS" else None)
    forged_cid = planted.result["result_cid"]
    node = stack.node_address("node-1")
    assert verify_outcome(task_id, planted.result, {node}, spec=theirs.to_json()) == node

    job_id = requester.request(slow_job("real", seconds=1))
    assert job_id == next_id
    outcome = requester.wait(job_id, timeout=180)
    assert outcome.job.status == JobStatus.COMPLETED
    assert outcome.job.result_cid != forged_cid
    assert requester.result_file(outcome.job.result_cid, "stdout") == "real\n"
    refused = [e.detail for e in timeline(stack, requester, job_id) if e.kind == "untrusted-result"]
    assert len(refused) == 1 and "the spec it ran" in refused[0]


def test_a_forged_memo_cache_entry_is_ignored_and_the_job_really_runs(
        stack: DevStack, requester: Requester) -> None:
    nonce = time.time_ns()  # a job no earlier run has cached
    spec = JobSpec(image=BUSYBOX_IMAGE, cache=True, timeout=60,
                   entrypoint=["sh", "-c", f"echo {nonce}; head -c 16 /dev/urandom | od -An -tx1"])
    text = spec.to_json()
    image_id = str(docker.from_env().images.get(BUSYBOX_IMAGE).id)
    key = cache_key(parse_spec(text), image_id, [])
    forged_cid = requester.kubo.add_bytes(b"poisoned\n", "forged")
    entry = {"result_cid": forged_cid, "exit_code": 0, "node": "node-1",
             "signature": sign_cache_entry(ATTACKER, key, forged_cid, 0, "node-1")}  # not a node's
    cache = redis.Redis.from_url(stack.env["COD_BROKER_URL"])
    cache.set(KEY_PREFIX + key, json.dumps(entry))

    outcome = requester.wait(requester.request(text), timeout=120)
    assert outcome.job.status == JobStatus.COMPLETED
    assert outcome.job.result_cid != forged_cid
    assert requester.result_file(outcome.job.result_cid, "stdout").startswith(f"{nonce}\n")
    # the node looked at exactly that key: it replaced the forgery with its own, signed entry
    stored = json.loads(cache.get(KEY_PREFIX + key) or b"{}")
    assert stored["result_cid"] == outcome.job.result_cid
    assert cache_entry_signer(key, stored["result_cid"], stored["exit_code"], stored["node"],
                              stored["signature"]) == stack.node_address("node-1")
