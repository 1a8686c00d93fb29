"""Decoding v2 `JobRequested(jobId, requester, consumer, Terms terms, string spec)` logs from raw
bytes (the contract's ABI, no chain): the terms are recorded whole, a spec that is not UTF-8 is
still a request, and a log out of shape names what is wrong."""

from __future__ import annotations

from typing import Any

from eth_abi.abi import encode as abi_encode
from web3 import Web3

from bridge.chain import load_artifact
from bridge.events import RequestDecoder, UndecodableRequest
from bridge.ledger import NewJob
from bridge.terms import TERMS_TYPE, Terms

DECODER = RequestDecoder.from_abi(load_artifact("JobManager")["abi"])
REQUESTER = Web3.to_checksum_address("0x" + "12" * 20)
CONSUMER = Web3.to_checksum_address("0x" + "34" * 20)
TERMS = Terms(requester=REQUESTER, consumer=CONSUMER, fee=3 * 10**15, deadline=1_700_003_600,
              callback_gas_limit=200_000, replicas=1, lease=900, restricted=True,
              request_hash=bytes(range(32)))


def raw_log(job_id: int = 7, spec: bytes = b'{"image":"x"}', terms: Terms = TERMS,
            data: bytes | None = None, topics: int = 4) -> dict[str, Any]:
    def word(address: str) -> bytes:
        return bytes(12) + bytes.fromhex(address[2:])

    return {"topics": [DECODER.topic, job_id.to_bytes(32, "big"), word(terms.requester),
                       word(terms.consumer)][:topics],
            "data": data if data is not None else abi_encode([TERMS_TYPE, "bytes"],
                                                             [terms.as_tuple(), spec]),
            "blockNumber": 12, "blockHash": b"\x01" * 32, "transactionHash": b"\x02" * 32,
            "logIndex": 3}


def test_the_terms_are_decoded_whole() -> None:
    job = DECODER.decode(raw_log())

    assert isinstance(job, NewJob)
    assert (job.job_id, job.requester, job.consumer, job.spec) == (7, REQUESTER, CONSUMER,
                                                                  '{"image":"x"}')
    assert (job.fee_wei, job.deadline, job.callback_gas_limit, job.replicas, job.lease_s,
            job.restricted) == (3 * 10**15, 1_700_003_600, 200_000, 1, 900, True)
    assert job.request_hash == "0x" + bytes(range(32)).hex()
    assert (job.block_number, job.log_index, job.reason) == (12, 3, None)


def test_the_recorded_terms_rebuild_the_digest_the_chain_stores() -> None:
    job = DECODER.decode(raw_log())
    assert isinstance(job, NewJob)

    class Row:  # the ledger columns, as the listener records them
        requester, consumer, fee_wei = job.requester, job.consumer, str(job.fee_wei)
        deadline, callback_gas_limit, replicas = job.deadline, job.callback_gas_limit, job.replicas
        lease_s, restricted, request_hash = job.lease_s, job.restricted, job.request_hash

    assert Terms.from_row(Row()).digest() == TERMS.digest()
    assert len(TERMS.digest()) == 20


def test_a_spec_that_is_not_utf8_is_still_a_request() -> None:
    job = DECODER.decode(raw_log(spec=b'{"image":"\xff"}'))

    assert isinstance(job, NewJob)
    assert job.reason is not None and job.reason.startswith("invalid spec: not UTF-8 text")


def test_a_log_out_of_shape_is_named_not_raised() -> None:
    short = DECODER.decode(raw_log(topics=3))
    garbage = DECODER.decode(raw_log(data=b"\x00" * 40))

    assert isinstance(short, UndecodableRequest) and "4 topics" in short.reason
    assert isinstance(garbage, UndecodableRequest) and garbage.job_id == 7
