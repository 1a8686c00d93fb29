"""`cod job describe` shows the network: who claimed a job, lapsed, committed, revealed (and whether
it agreed with the result), the finalization and the slashing — decoded with the artifact's event
ABIs from fabricated logs, read with the job id as a topic filter."""

from __future__ import annotations

from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_utils.abi import event_abi_to_log_topic
from hexbytes import HexBytes
from web3 import Web3

from bridge.chain import load_artifact
from bridge.logscan import LogScanner
from bridge.terms import result_digest
from cod.cli.jobs import network_lines
from cod.queries import (
    ChainEvent,
    decode_network_logs,
    network_detail,
    network_logs,
    network_view,
)
from cod.views import JobDetail, Status

ABI: list[dict[str, Any]] = load_artifact("JobManager")["abi"]
CONTRACT = Web3.to_checksum_address("0x" + "c0" * 20)
MANAGER = Web3().eth.contract(address=CONTRACT, abi=ABI)
A, B, C, D = (Web3.to_checksum_address("0x" + byte * 20) for byte in ("aa", "bb", "cc", "dd"))
CID = "bafkreidovn72i5u5267d2jpcgldmxcrh2a3n7bx5xt4g6cpfjnd45mr7wi"
GOOD = result_digest(CID, 0, b"42\n")
BAD = result_digest(CID, 0, b"43\n")
LEASE_END = 1_700_000_000  # 2023-11-14T22:13:20Z
JOB = 9


def log(name: str, block: int, index: int = 0, removed: bool = False, **args: Any
        ) -> dict[str, Any]:
    """A raw log as the node returns it: indexed args as topics, the others ABI-encoded."""
    event = next(e for e in ABI if e.get("type") == "event" and e["name"] == name)
    topics = [HexBytes(event_abi_to_log_topic(event))]
    topics += [HexBytes(abi_encode([i["type"]], [args[i["name"]]]))
               for i in event["inputs"] if i["indexed"]]
    data = [i for i in event["inputs"] if not i["indexed"]]
    return {"address": CONTRACT, "blockNumber": block, "logIndex": index, "removed": removed,
            "blockHash": HexBytes(block.to_bytes(32, "big")),
            "transactionHash": HexBytes((block * 100 + index).to_bytes(32, "big")),
            "transactionIndex": 0, "topics": topics,
            "data": HexBytes(abi_encode([i["type"] for i in data], [args[i["name"]] for i in data]))}


def replicated_job() -> list[dict[str, Any]]:
    """Three replicas: A claims and lapses (D takes its slot), B, C, D commit and reveal, C
    disagrees; the majority completes it, finalize pays B and D and slashes C."""
    return [
        log("ClaimersSet", 10, jobId=JOB, claimers=[A, B, C, D]),
        log("JobClaimed", 11, jobId=JOB, operator=A, leaseEnd=LEASE_END),
        log("JobClaimed", 11, 1, jobId=JOB, operator=B, leaseEnd=LEASE_END),
        log("JobClaimed", 12, jobId=JOB, operator=C, leaseEnd=LEASE_END),
        log("JobClaimed", 13, jobId=10, operator=A, leaseEnd=LEASE_END),  # another job
        log("LeaseLapsed", 20, jobId=JOB, operator=A, penalty=10**16),
        log("Slashed", 20, 1, operator=A, jobId=JOB, amount=10**16, reason=1),
        log("JobClaimed", 20, 2, jobId=JOB, operator=D, leaseEnd=LEASE_END + 600),
        log("ResultCommitted", 21, jobId=JOB, operator=B, commitment=b"\x0b" * 32),
        log("ResultCommitted", 22, jobId=JOB, operator=C, commitment=b"\x0c" * 32),
        log("ResultCommitted", 23, jobId=JOB, operator=D, commitment=b"\x0d" * 32),
        log("RevealOpened", 23, 1, jobId=JOB, revealEnd=LEASE_END + 900),
        log("ResultRevealed", 24, jobId=JOB, operator=B, answer=GOOD),
        log("ResultRevealed", 25, jobId=JOB, operator=C, answer=BAD),
        log("ResultRevealed", 26, jobId=JOB, operator=D, answer=GOOD),
        log("ResultRevealed", 26, 5, removed=True, jobId=JOB, operator=A, answer=BAD),  # reorged
        log("JobFinalized", 40, jobId=JOB, agreeing=2, slashed=5 * 10**16),
        log("Slashed", 40, 1, operator=C, jobId=JOB, amount=5 * 10**16, reason=2),
        log("Slashed", 41, operator=C, jobId=10, amount=1, reason=2),  # another job
    ]


def test_logs_decode_with_the_artifacts_abis_oldest_first_for_this_job_only() -> None:
    raws = replicated_job()
    events = decode_network_logs(MANAGER, reversed(raws), JOB)
    assert [e.name for e in events] == [
        "ClaimersSet", "JobClaimed", "JobClaimed", "JobClaimed", "LeaseLapsed", "Slashed",
        "JobClaimed", "ResultCommitted", "ResultCommitted", "ResultCommitted", "RevealOpened",
        "ResultRevealed", "ResultRevealed", "ResultRevealed", "JobFinalized", "Slashed"]
    claimed = events[1]
    assert claimed.args["operator"] == A and claimed.args["leaseEnd"] == LEASE_END
    assert (claimed.block_number, claimed.log_index) == (11, 0)
    assert claimed.tx_hash == "0x" + (1100).to_bytes(32, "big").hex()
    # a log of another event of the same shape, or garbage, is left out
    other = log("JobCancelled", 30, jobId=JOB)
    garbage = dict(log("JobClaimed", 31, jobId=JOB, operator=A, leaseEnd=1), data=HexBytes(b"x"))
    assert decode_network_logs(MANAGER, [other, garbage], JOB) == []


def test_each_operators_part_and_the_finalization() -> None:
    events = decode_network_logs(MANAGER, replicated_job(), JOB)
    operators, finalized, reveal_end, claimers = network_view(events, GOOD)
    assert claimers == [A, B, C, D]
    assert reveal_end == "2023-11-14T22:28:20Z"
    assert finalized is not None and (finalized.agreeing, finalized.slashed_wei) == (
        2, str(5 * 10**16))
    seen = {o.operator: o for o in operators}
    assert list(seen) == [A, B, C, D]
    assert seen[A].lapsed and seen[A].penalty_wei == str(10**16)
    assert seen[A].slashed_wei == str(10**16) and seen[A].slash_reasons == ["lapse"]
    assert seen[A].commitment is None and seen[A].answer is None and seen[A].agrees is None
    assert seen[B].lease_end == "2023-11-14T22:13:20Z" and not seen[B].lapsed
    assert seen[B].commitment == "0x" + "0b" * 32
    assert seen[B].answer == "0x" + GOOD.hex() and seen[B].agrees is True
    assert seen[B].slashed_wei == "0"
    assert seen[C].answer == "0x" + BAD.hex() and seen[C].agrees is False
    assert seen[C].slash_reasons == ["disagreement"]
    assert seen[D].lease_end == "2023-11-14T22:23:20Z" and seen[D].agrees is True
    # not completed (yet): no digest to agree with
    open_view, _, _, _ = network_view(events, None)
    assert {o.agrees for o in open_view} == {None}


def test_timeline_details() -> None:
    events = {(e.name, str(e.args.get("operator"))): e
              for e in decode_network_logs(MANAGER, replicated_job(), JOB)}
    assert network_detail(events["JobClaimed", A]) == (
        f"by {A}, lease until 2023-11-14T22:13:20Z")
    assert network_detail(events["LeaseLapsed", A]) == (
        f"{A}'s lease lapsed: penalty {10**16} wei")
    assert network_detail(events["ResultCommitted", B]) == f"by {B}: 0x" + "0b" * 32
    assert network_detail(events["ResultRevealed", B], GOOD) == (
        f"by {B}: 0x{GOOD.hex()} (agrees with the result)")
    assert network_detail(events["ResultRevealed", C], GOOD) == (
        f"by {C}: 0x{BAD.hex()} (differs from the result)")
    assert network_detail(events["ResultRevealed", C]) == f"by {C}: 0x{BAD.hex()}"
    assert network_detail(events["RevealOpened", "None"]) == "until 2023-11-14T22:28:20Z"
    assert network_detail(events["JobFinalized", "None"]) == f"2 agreeing, {5 * 10**16} wei slashed"
    assert network_detail(events["Slashed", C]) == f"{C} lost {5 * 10**16} wei (disagreement)"
    assert network_detail(events["ClaimersSet", "None"]) == (
        f"only {A}, {B}, {C}, {D} may claim it")


class FakeEth:
    """`eth.get_logs` over fabricated logs, filtering as a node does (address, block range,
    topics: None matches anything, a list is an OR)."""

    def __init__(self, logs: list[dict[str, Any]]) -> None:
        self.logs = logs
        self.calls: list[dict[str, Any]] = []

    def get_logs(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.calls.append(params)

        def matches(raw: dict[str, Any]) -> bool:
            if raw["address"] != params["address"]:
                return False
            if not params["fromBlock"] <= raw["blockNumber"] <= params["toBlock"]:
                return False
            for wanted, topic in zip(params["topics"], [*raw["topics"], None, None, None],
                                     strict=False):
                options = wanted if isinstance(wanted, list) else [wanted]
                if wanted is not None and Web3.to_hex(topic or b"") not in options:
                    return False
            return True

        return [raw for raw in self.logs if matches(raw)]


class FakeW3:
    def __init__(self, logs: list[dict[str, Any]]) -> None:
        self.eth = FakeEth(logs)


def test_reads_filter_on_the_indexed_job_id_in_bounded_windows() -> None:
    w3 = FakeW3(replicated_job())
    events = network_logs(LogScanner(w3, MANAGER, 10, 1000), JOB, 10, 45)  # type: ignore[arg-type]
    assert len(events) == 16 and {e.args["jobId"] for e in events} == {JOB}
    word = "0x" + JOB.to_bytes(32, "big").hex()
    ranges = sorted({(c["fromBlock"], c["toBlock"]) for c in w3.eth.calls})
    assert ranges == [(10, 19), (20, 29), (30, 39), (40, 45)]
    assert {tuple(c["topics"][1:]) for c in w3.eth.calls} == {(word,), (None, word)}  # Slashed
    slashed = [c for c in w3.eth.calls if len(c["topics"]) == 3]
    assert all(len(c["topics"][0]) == 1 for c in slashed)
    # the budget bounds the read: only blocks 10..24 are looked at
    w3 = FakeW3(replicated_job())
    short = network_logs(LogScanner(w3, MANAGER, 10, 15), JOB, 10, 45)  # type: ignore[arg-type]
    assert max(c["toBlock"] for c in w3.eth.calls) == 24
    assert [e.block_number for e in short][-1] == 24


def test_describe_prints_the_network_and_json_keys_are_camel_case() -> None:
    events = decode_network_logs(MANAGER, replicated_job(), JOB)
    operators, finalized, reveal_end, claimers = network_view(events, GOOD)
    detail = JobDetail(id=JOB, status=Status.COMPLETED, requester=A, consumer=A, fee_wei="3",
                       deadline="", replicas=3, lease_seconds=600, restricted=True,
                       allowed_claimers=claimers, operators=operators, reveal_end=reveal_end,
                       finalized=finalized)
    lines = network_lines(detail)
    assert lines[0] == f"replicas 3, lease 600 s, claimers: only {A}, {B}, {C}, {D}"
    assert lines[1] == (f"claimed by {A} (lease until 2023-11-14T22:13:20Z); lease lapsed, "
                        "penalty 0.01 ETH; slashed 0.01 ETH (lapse)")
    assert lines[3].startswith(f"claimed by {C} (lease until 2023-11-14T22:13:20Z); committed "
                               "0x0c0c0c0c0c…; revealed 0x")
    assert lines[3].endswith("(differs from the result); slashed 0.05 ETH (disagreement)")
    assert lines[4].endswith("(agrees with the result)")
    assert lines[-2:] == ["reveal phase until 2023-11-14T22:28:20Z",
                          "finalized: 2 agreeing, 0.05 ETH slashed"]
    data = detail.to_data()
    assert data["leaseSeconds"] == 600 and data["allowedClaimers"] == [A, B, C, D]
    assert data["revealEnd"] == "2023-11-14T22:28:20Z"
    assert data["finalized"] == {"agreeing": 2, "slashedWei": str(5 * 10**16)}
    assert set(data["operators"][0]) == {"operator", "leaseEnd", "lapsed", "penaltyWei",
                                         "commitment", "answer", "agrees", "slashedWei",
                                         "slashReasons"}
    single = JobDetail(id=1, status=Status.REQUESTED, requester=A, consumer=A, fee_wei="1",
                       deadline="", replicas=1, lease_seconds=900, restricted=False)
    assert network_lines(single) == ["replicas 1, lease 900 s, claimers: any staked operator"]
    assert ChainEvent("JobCancelled", {}, 1, 0, "0x").name == "JobCancelled"
