"""Three independent operators on one chain share the work: 30 requests, each claimed, run and
settled exactly once, and not all by one operator."""

from __future__ import annotations

from collections import Counter

from bridge.chain import JobStatus
from tests.network.conftest import Network, spec

JOBS = 30


def test_thirty_jobs_each_settle_once_across_three_operators(three_operators: Network) -> None:
    net = three_operators
    addresses = {o.address.lower(): o for o in net.operators}
    assert len(addresses) == 3
    for each in net.operators:  # three staked, active operators of one JobManager
        assert net.stake(each.address) == int(net.manager.functions.minStake().call())

    jobs = [net.request(spec(f"network-job-{n}"))[0] for n in range(JOBS)]
    net.wait_settled(jobs, timeout=150)

    completed_by: Counter[str] = Counter()
    for job_id in jobs:
        assert net.status(job_id) == JobStatus.COMPLETED, job_id
        done = net.events("JobCompleted", jobId=job_id)
        assert len(done) == 1, f"job {job_id}: {len(done)} JobCompleted events"
        assert net.events("JobFailed", jobId=job_id) == []
        operator = str(done[0]["args"]["operator"]).lower()
        assert operator in addresses
        # the operator that settled it is the one whose (confirmed) claim it held
        claims = net.events("JobClaimed", jobId=job_id)
        assert [str(c["args"]["operator"]).lower() for c in claims] == [operator], job_id
        completed_by[operator] += 1

        # run once: one attempt in all three ledgers together, by the settling operator's node,
        # whose result is the one on-chain
        attempts = {o.node_id: o.ledger_attempts(net.chain_id, net.address, job_id)
                    for o in net.operators}
        ran = [(node, a) for node, list_ in attempts.items() for a in list_]
        assert len(ran) == 1, f"job {job_id} ran {len(ran)} times: {attempts}"
        node, attempt = ran[0]
        assert node == addresses[operator].node_id
        assert attempt.result_cid == done[0]["args"]["resultCid"]

    assert sum(completed_by.values()) == JOBS
    # a network, not one operator doing everything (and every operator got some)
    assert max(completed_by.values()) < JOBS, completed_by
    assert len(completed_by) >= 2, completed_by
    # results are distinct per job (each wrote its own text)
    cids = {net.events("JobCompleted", jobId=j)[0]["args"]["resultCid"] for j in jobs}
    assert len(cids) == JOBS
