"""An operator dies holding claims (kill -9 of its bridge and worker): its leases lapse, the other
operators take the jobs over and finish every one; nothing is lost or settled twice, and the lapse
is paid for as designed (LeaseLapsed + Slashed, stake − lapsePenalty per job, to the requester)."""

from __future__ import annotations

import time

from web3 import Web3

from bridge.chain import JobStatus, read_job
from tests.network.conftest import JOBS_LEASE_S, Network, spec

JOBS = 12
SLEEP_S = 6  # long enough that the victim still holds its claims when it is killed


def test_killed_operator_leases_lapse_and_the_others_finish(three_operators: Network) -> None:
    net = three_operators
    victim = net.operators[2]  # a joined stack (the first one also runs anvil)
    others = {o.address.lower() for o in net.operators if o is not victim}
    penalty = int(net.manager.functions.lapsePenalty().call())
    assert penalty > 0
    requester = net.owner.address
    refunds_before = net.withdrawable(requester)

    jobs = [net.request(spec(f"lapse-job-{n}", sleep_s=SLEEP_S), lease=JOBS_LEASE_S)[0]
            for n in range(JOBS)]
    assert all(net.terms_of(j).lease == JOBS_LEASE_S for j in jobs)

    def victim_holds() -> list[int]:
        return [j for j in jobs if read_job(net.manager, j).held_by(victim.address)]

    net.wait_until("the victim to hold claims", lambda: len(victim_holds()) >= 2, timeout=60,
                   interval=0.2)
    victim.kill()

    def nothing_pending() -> bool:  # a settlement it sent just before dying is mined (or gone)
        address = Web3.to_checksum_address(victim.address)
        return (net.w3.eth.get_transaction_count(address, "pending")
                == net.w3.eth.get_transaction_count(address, "latest"))

    net.wait_until("the victim's last transactions to be mined", nothing_pending, timeout=30,
                   interval=0.2)
    held = victim_holds()
    assert held, "the victim settled everything it held before it died"
    print(f"killed {victim.node_id} holding jobs {held}")
    stake_before = net.stake(victim.address)
    killed_at = time.monotonic()

    net.wait_settled(jobs, timeout=JOBS_LEASE_S + 120)
    took = time.monotonic() - killed_at

    for job_id in jobs:
        assert net.status(job_id) == JobStatus.COMPLETED, job_id
        done = net.events("JobCompleted", jobId=job_id)
        assert len(done) == 1, f"job {job_id}: {len(done)} JobCompleted events"
        assert net.events("JobFailed", jobId=job_id) == []
        claimers = [str(c["args"]["operator"]).lower()
                    for c in net.events("JobClaimed", jobId=job_id)]
        lapses = net.events("LeaseLapsed", jobId=job_id)
        if job_id in held:
            settled_by = str(done[0]["args"]["operator"]).lower()
            assert settled_by in others, job_id
            # the victim's claim, then one other operator's once the lease had lapsed
            assert claimers == [victim.address.lower(), settled_by], claimers
            assert [(str(e["args"]["operator"]).lower(), int(e["args"]["penalty"]))
                    for e in lapses] == [(victim.address.lower(), penalty)]
            slashes = net.events("Slashed", jobId=job_id)
            assert [(str(e["args"]["operator"]).lower(), int(e["args"]["amount"]),
                     int(e["args"]["reason"])) for e in slashes] == [
                (victim.address.lower(), penalty, 1)]
            assert net.manager.functions.hasLapsed(job_id, victim.address).call()
            # run once by the survivors (the victim's own run died with it)
            ran = [a for o in net.operators if o is not victim
                   for a in o.ledger_attempts(net.chain_id, net.address, job_id)]
            assert len(ran) == 1, (job_id, ran)
        else:
            assert lapses == [], job_id
            assert len(claimers) == 1, (job_id, claimers)

    # the victim paid lapsePenalty per lapsed job, credited to the requester
    assert net.stake(victim.address) == stake_before - penalty * len(held)
    assert net.withdrawable(requester) == refunds_before + penalty * len(held)
    assert len(net.events("LeaseLapsed")) == len(held)
    # the lapse was noticed at the lease's end, not much later
    assert took < JOBS_LEASE_S + 90, took
