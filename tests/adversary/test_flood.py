"""Head-of-line attacks: a flood of jobs nobody can serve must not hold back a servable one, from
another requester or from the flooding requester itself (a stack of its own: the flood stays)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.chain import JobStatus, read_job
from bridge.ledger import JobState, Ledger
from devstack.images import BUSYBOX_IMAGE
from devstack.stack import DevStack
from protocol.spec import JobSpec, Resources
from tests.adversary.hostile import Flood
from tests.e2e.client import Requester, settings_for

FLOOD = 500
UNSERVABLE = JobSpec(image=BUSYBOX_IMAGE, entrypoint=["true"], resources=Resources(gpu=16),
                     queue_timeout=86_400)  # willing to wait a day for a 16-GPU node


@pytest.fixture(scope="module")
def flood_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(Path(tmp_path_factory.mktemp("flood")), block_time=1, preferred_ports=False)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def test_a_flood_of_unservable_jobs_does_not_starve_servable_ones(flood_stack: DevStack) -> None:
    requester = Requester(settings_for(flood_stack.env))
    flood = Flood(requester)
    flood.wait_mined(flood.send(UNSERVABLE, FLOOD))
    ledger = Ledger(flood_stack.env["COD_LEDGER_URL"], migrate=False)
    chain_id, contract = int(requester.w3.eth.chain_id), str(requester.manager.address)
    deadline = time.monotonic() + 60
    while len(ledger.all_jobs(chain_id, contract)) < FLOOD and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(ledger.all_jobs(chain_id, contract)) >= FLOOD  # the bridge has the whole flood

    ordinary = JobSpec(image=BUSYBOX_IMAGE, entrypoint=["echo", "served"])
    started = time.monotonic()
    outcome = requester.wait(requester.request(ordinary), timeout=60)
    assert outcome.job.status == JobStatus.COMPLETED, outcome.reason
    other_requester_s = time.monotonic() - started

    # the flooding requester's own servable job is not stuck behind its flood either
    (tx_hash,) = flood.send(ordinary, 1)
    receipt = requester.w3.eth.wait_for_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    own_id = int.from_bytes(receipt["logs"][0]["topics"][1], "big")
    own = requester.wait(own_id, timeout=60)
    assert own.job.status == JobStatus.COMPLETED, own.reason

    waiting = [j for j in ledger.all_jobs(chain_id, contract) if j.state == JobState.REQUESTED]
    assert len(waiting) == FLOOD  # still waiting for a node, none lost or failed early
    assert read_job(requester.manager, waiting[0].job_id).status == JobStatus.REQUESTED
    print(f"servable job behind a flood of {FLOOD}: {other_requester_s:.1f} s")
