"""Replicated jobs on a real network: two honest operator stacks and a rogue key that drives the
contract itself (tests/network/rogue.py). The majority's result wins and the rogue pays; two
replicas that disagree fail the job with the whole fee refunded; a copier that takes an honest
operator's commitment and reveal from the chain or the mempool gets nothing and is slashed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import Wei

from bridge.chain import JobStatus, read_operator
from bridge.terms import Terms
from devstack.stack import PROJECT_ROOT, dev_key
from tests.network.conftest import COPIER_KEY_INDEX, ROGUE_KEY_INDEX, Network, spec
from tests.network.rogue import Rogue

BAD_REVEAL = 8  # IJobManager.Reason.BadReveal
REVEAL_WINDOW_S = 600
CALLBACK_GAS = 200_000
CONSUMER_ARTIFACT = (PROJECT_ROOT / ".hardhat/artifacts/contracts/test/ReplicatedConsumer.sol"
                     / "ReplicatedConsumer.json")
RUN_TIMEOUT_S = 150  # claim → run → commit by the honest stacks


@dataclass
class Replicated:
    net: Network
    rogue: Rogue
    copier: Rogue

    @property
    def honest(self) -> list[str]:
        return [o.address for o in self.net.operators]

    def wrong_cid(self) -> str:
        """A real CID, of other content than any job writes (computed, not stored)."""
        api = self.net.operators[0].stack.env["COD_IPFS_API"]
        response = httpx.post(f"{api}/api/v0/add", params={"cid-version": "1", "only-hash": "true"},
                              files={"file": ("x", os.urandom(64))}, timeout=30)
        response.raise_for_status()
        return str(response.json()["Hash"])

    def finalized(self, job_id: int, timeout: float = 30) -> dict[str, int]:
        """The job's one `JobFinalized`, sent by an honest operator's bridge (anyone may send it,
        once every committed replica revealed or the reveal window ended)."""
        self.net.wait_until(f"job {job_id} to be finalized",
                            lambda: bool(self.net.events("JobFinalized", jobId=job_id)), timeout)
        events = self.net.events("JobFinalized", jobId=job_id)
        assert len(events) == 1, events
        by = str(self.net.w3.eth.get_transaction(events[0]["transactionHash"])["from"])
        assert by.lower() in {a.lower() for a in self.honest}, by
        return {"agreeing": int(events[0]["args"]["agreeing"]),
                "slashed": int(events[0]["args"]["slashed"])}

    def slashes(self, job_id: int) -> list[tuple[str, int, int]]:
        return [(str(e["args"]["operator"]).lower(), int(e["args"]["amount"]),
                 int(e["args"]["reason"])) for e in self.net.events("Slashed", jobId=job_id)]

    def earned(self, account: str) -> int:
        return read_operator(self.net.manager, account).earned

    def revealed(self, job_id: int) -> dict[str, bytes]:
        return {str(e["args"]["operator"]).lower(): bytes(e["args"]["answer"])
                for e in self.net.events("ResultRevealed", jobId=job_id)}


@pytest.fixture(scope="module")
def replicated(two_operators: Network) -> Iterator[Replicated]:
    net = two_operators
    rogue = Rogue(net.w3, net.manager, dev_key(ROGUE_KEY_INDEX))
    copier = Rogue(net.w3, net.manager, dev_key(COPIER_KEY_INDEX))
    min_stake = int(net.manager.functions.minStake().call())
    rogue.register(4 * min_stake)  # enough to stay eligible after a slash or two
    copier.register(4 * min_stake)
    yield Replicated(net, rogue, copier)


def deploy_consumer(net: Network) -> Contract:
    """The test consumer that requests replicated jobs (contracts/test/ReplicatedConsumer.sol;
    Hardhat's build of it: it is not among the artifacts shipped in bridge/artifacts)."""
    assert CONSUMER_ARTIFACT.exists(), f"{CONSUMER_ARTIFACT} missing: run `npx hardhat compile`"
    artifact = json.loads(CONSUMER_ARTIFACT.read_text())
    factory = net.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = net.owner.transact(factory.constructor(net.address))
    contract = net.w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])
    assert isinstance(contract, Contract)
    return contract


def test_majority_wins_over_a_rogue_replica(replicated: Replicated) -> None:
    net, rogue = replicated.net, replicated.rogue
    consumer = deploy_consumer(net)
    fee = int(net.manager.functions.quoteFee(consumer.address, CALLBACK_GAS, 3).call())
    net.owner.send({"to": consumer.address, "value": Wei(fee)})
    receipt = net.owner.transact(consumer.functions.request(
        spec("replicated-three", result=True), fee, CALLBACK_GAS, 3))
    event = net.manager.events.JobRequested().process_receipt(receipt, errors=DISCARD)[0]
    job_id, terms = int(event["args"]["jobId"]), Terms.from_event(dict(event["args"]["terms"]))
    assert terms.replicas == 3 and terms.requester == consumer.address
    # two honest operators can hold two of the three slots: the rogue gets the third
    rogue.claim(job_id, terms)
    wrong = rogue.commit(job_id, terms, replicated.wrong_cid(), 0, b"not the answer\n")
    rogue_stake = net.stake(rogue.address)
    honest_earned = {a: replicated.earned(a) for a in replicated.honest}

    net.wait_until("the reveal phase (every replica committed)",
                   lambda: net.status(job_id) != JobStatus.CLAIMED, timeout=RUN_TIMEOUT_S)
    committed = {str(e["args"]["operator"]).lower()
                 for e in net.events("ResultCommitted", jobId=job_id)}
    assert committed == {a.lower() for a in [*replicated.honest, rogue.address]}
    rogue.reveal(job_id, terms, wrong)

    net.wait_until("the honest majority to complete the job",
                   lambda: bool(net.events("JobCompleted", jobId=job_id)), timeout=RUN_TIMEOUT_S)
    done = net.events("JobCompleted", jobId=job_id)
    assert len(done) == 1
    answers = replicated.revealed(job_id)
    honest_answers = {answers.get(a.lower()) for a in replicated.honest}
    assert len(honest_answers) == 1 and None not in honest_answers, answers  # they agree
    assert answers[rogue.address.lower()] not in honest_answers
    args = done[0]["args"]
    assert str(args["operator"]).lower() in {a.lower() for a in replicated.honest}
    assert args["resultCid"] != wrong.result_cid
    assert bytes(args["result"]) == b"replicated-three\n"
    # the consumer got the majority's result, once
    assert consumer.functions.results().call() == 1
    assert consumer.functions.lastResultCid().call() == args["resultCid"]
    assert consumer.functions.lastResult().call() == b"replicated-three\n"

    final = replicated.finalized(job_id)
    penalty = int(net.manager.functions.disagreePenalty().call())
    assert final == {"agreeing": 2, "slashed": penalty}
    assert replicated.slashes(job_id) == [(rogue.address.lower(), penalty, 2)]
    assert net.stake(rogue.address) == rogue_stake - penalty
    assert replicated.earned(rogue.address) == 0
    for account in replicated.honest:  # the fee and two thirds of the slashed stake
        assert replicated.earned(account) - honest_earned[account] == (
            terms.fee // 2 + penalty // 3)
    assert net.status(job_id) == JobStatus.COMPLETED


def test_two_replicas_that_disagree_fail_with_a_full_refund(replicated: Replicated) -> None:
    net, rogue = replicated.net, replicated.rogue
    honest = net.operators[0].address
    job_id, terms = net.request(spec("replicated-two"), replicas=2, lease=0,
                                claimers=[honest, rogue.address])
    assert terms.restricted and terms.replicas == 2
    rogue.claim(job_id, terms)
    wrong = rogue.commit(job_id, terms, replicated.wrong_cid())
    refunds_before = net.withdrawable(net.owner.address)
    earned_before = replicated.earned(honest)

    net.wait_until("the reveal phase", lambda: net.status(job_id) == JobStatus.REVEALING,
                   timeout=RUN_TIMEOUT_S)
    rogue.reveal(job_id, terms, wrong)
    net.wait_until("the honest reveal", lambda: honest.lower() in replicated.revealed(job_id),
                   timeout=60)
    answers = replicated.revealed(job_id)
    assert answers[honest.lower()] != answers[rogue.address.lower()]

    assert replicated.finalized(job_id) == {"agreeing": 0, "slashed": 0}
    assert net.status(job_id) == JobStatus.FAILED
    assert net.events("JobCompleted", jobId=job_id) == []
    failed = net.events("JobFailed", jobId=job_id)
    assert len(failed) == 1 and "disagree" in failed[0]["args"]["reason"]
    assert int(failed[0]["args"]["operator"], 16) == 0
    # the whole fee back to the requester; nobody earned anything
    assert net.withdrawable(net.owner.address) == refunds_before + terms.fee
    assert replicated.earned(honest) == earned_before
    assert replicated.earned(rogue.address) == 0
    # the other honest operator was not among the named claimers
    claimers = {str(e["args"]["operator"]).lower() for e in net.events("JobClaimed", jobId=job_id)}
    assert claimers == {honest.lower(), rogue.address.lower()}


def test_a_copier_cannot_take_a_reveal(replicated: Replicated) -> None:
    """Last in the module: it moves the chain's clock past the reveal window."""
    net, copier = replicated.net, replicated.copier
    job_id, terms = net.request(spec("replicated-copied"), replicas=3, lease=0,
                                claimers=[*replicated.honest, copier.address])
    copier.claim(job_id, terms)
    copier_stake = net.stake(copier.address)
    honest = {a.lower() for a in replicated.honest}

    # copy the first honest commitment as ours
    net.wait_until("an honest commitment",
                   lambda: bool(net.events("ResultCommitted", jobId=job_id)),
                   timeout=RUN_TIMEOUT_S, interval=0.1)
    first = net.events("ResultCommitted", jobId=job_id)[0]["args"]
    assert str(first["operator"]).lower() in honest
    copier.commit_raw(job_id, terms, bytes(first["commitment"]))

    # when an honest reveal shows (in the mempool, or mined), send the same values from our key
    opening, seen, _ = copier.watch_reveal(job_id, replicated.honest, timeout=RUN_TIMEOUT_S)
    reason, status = copier.try_reveal(job_id, terms, opening)
    print(f"job {job_id}: the copier saw an honest reveal {seen}")
    assert (reason, status) == (BAD_REVEAL, 0), (seen, reason, status)
    # and again with the opening of the commitment it copied, once that one is on-chain
    net.wait_until("the honest majority", lambda: bool(net.events("JobCompleted", jobId=job_id)),
                   timeout=RUN_TIMEOUT_S)
    for event in net.events("ResultRevealed", jobId=job_id):
        tx = net.w3.eth.get_transaction(event["transactionHash"])
        found = copier._opening_in(tx["input"].to_0x_hex(), job_id)
        assert found is not None
        assert copier.try_reveal(job_id, terms, found) == (BAD_REVEAL, 0)
    assert copier.address.lower() not in replicated.revealed(job_id)
    done = net.events("JobCompleted", jobId=job_id)
    assert len(done) == 1 and str(done[0]["args"]["operator"]).lower() in honest

    # its slot stays committed: payouts wait for the end of the reveal window
    reveal_end = int(net.events("RevealOpened", jobId=job_id)[0]["args"]["revealEnd"])
    net.mine_to(reveal_end + 1)
    final = replicated.finalized(job_id)
    penalty = int(net.manager.functions.disagreePenalty().call())
    assert final == {"agreeing": 2, "slashed": penalty}
    assert replicated.slashes(job_id) == [(copier.address.lower(), penalty, 3)]  # no reveal
    assert net.stake(copier.address) == copier_stake - penalty
    assert replicated.earned(copier.address) == 0
    assert net.withdrawable(copier.address) == 0
