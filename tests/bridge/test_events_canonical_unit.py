"""The canonical fast path of `RequestDecoder` against web3's own decoding and eth_abi's: the same
values for every log the contract emits, the same outcome (values or reason) for everything else,
from formatted logs (bytes) and raw JSON-RPC logs (hex strings) alike. No chain."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode
from hexbytes import HexBytes
from web3 import Web3

from bridge import events
from bridge.chain import load_artifact
from bridge.events import RequestDecoder, UndecodableRequest
from bridge.ledger import NewJob
from bridge.terms import TERMS_TYPE, Terms

ABI = load_artifact("JobManager")["abi"]
DECODER = RequestDecoder.from_abi(ABI)
CONTRACT = Web3().eth.contract(address=Web3.to_checksum_address("0x" + "11" * 20), abi=ABI)


def eth_abi_only() -> RequestDecoder:
    """A decoder that never takes the fast path: every log through `eth_abi.decode`, as before."""
    slow = RequestDecoder.from_abi(ABI)
    slow.__dict__["canonical"] = False  # overrides the cached property
    return slow


SLOW = eth_abi_only()


def random_terms(rnd: random.Random) -> Terms:
    def address() -> str:
        return Web3.to_checksum_address("0x" + rnd.randbytes(20).hex())

    return Terms(requester=address(), consumer=address(),
                 fee=rnd.choice([0, 2**96 - 1, rnd.getrandbits(96)]), deadline=rnd.getrandbits(64),
                 callback_gas_limit=rnd.getrandbits(32), replicas=rnd.getrandbits(8),
                 lease=rnd.getrandbits(32), restricted=rnd.random() < 0.5,
                 request_hash=rnd.randbytes(32))


def formatted_log(job_id: int, terms: Terms, data: bytes) -> dict[str, Any]:
    """A log as web3 formats it (`w3.eth.get_logs`)."""
    def word(address: str) -> HexBytes:
        return HexBytes(bytes(12) + bytes.fromhex(address[2:]))

    return {"address": CONTRACT.address, "topics": [HexBytes(DECODER.topic),
                                                    HexBytes(job_id.to_bytes(32, "big")),
                                                    word(terms.requester), word(terms.consumer)],
            "data": HexBytes(data), "blockNumber": 12, "blockHash": HexBytes(b"\x01" * 32),
            "transactionHash": HexBytes(b"\x02" * 32), "transactionIndex": 0, "logIndex": 3,
            "removed": False}


def json_log(raw: dict[str, Any]) -> dict[str, Any]:
    """The same log as a raw `eth_getLogs` answer carries it: hex strings."""
    def quantity(value: int) -> str:
        return hex(value)

    return {"address": str(raw["address"]).lower(),
            "topics": ["0x" + bytes(t).hex() for t in raw["topics"]],
            "data": "0x" + bytes(raw["data"]).hex(), "blockNumber": quantity(raw["blockNumber"]),
            "blockHash": "0x" + bytes(raw["blockHash"]).hex(),
            "transactionHash": "0x" + bytes(raw["transactionHash"]).hex(),
            "transactionIndex": "0x0", "logIndex": quantity(raw["logIndex"]), "removed": False}


def outcome(decoded: NewJob | UndecodableRequest) -> tuple[str, tuple[Any, ...]]:
    return type(decoded).__name__, dataclasses.astuple(decoded)


def test_canonical_logs_decode_as_web3_decodes_them() -> None:
    rnd = random.Random(14)
    for job_id in range(300):
        terms = random_terms(rnd)
        spec = "".join(rnd.choice('{}"abc é中\n') for _ in range(rnd.choice([0, 1, 31, 32, 33, 200])))
        raw = formatted_log(job_id, terms, abi_encode([TERMS_TYPE, "string"],
                                                      [terms.as_tuple(), spec]))
        assert events._canonical(bytes(raw["data"])) is not None  # the fast path reads it
        web3s = CONTRACT.events.JobRequested().process_log(raw)["args"]
        for decoded in (DECODER.decode(raw), DECODER.decode(json_log(raw))):
            assert isinstance(decoded, NewJob)
            assert decoded.job_id == web3s["jobId"] == job_id
            assert decoded.spec == web3s["spec"] == spec
            assert (decoded.requester, decoded.consumer) == (web3s["terms"]["requester"],
                                                            web3s["terms"]["consumer"])
            assert (decoded.fee_wei, decoded.deadline, decoded.callback_gas_limit,
                    decoded.replicas, decoded.lease_s, decoded.restricted) == (
                web3s["terms"]["fee"], web3s["terms"]["deadline"],
                web3s["terms"]["callbackGasLimit"], web3s["terms"]["replicas"],
                web3s["terms"]["lease"], web3s["terms"]["restricted"])
            assert decoded.request_hash == "0x" + web3s["terms"]["requestHash"].hex()
            assert (decoded.block_number, decoded.log_index, decoded.reason) == (12, 3, None)
            assert decoded.block_hash == "0x" + "01" * 32 and decoded.tx_hash == "0x" + "02" * 32
            assert outcome(decoded) == outcome(SLOW.decode(raw))


def test_valid_non_canonical_encodings_fall_back_to_eth_abi() -> None:
    terms = random_terms(random.Random(1))
    data = abi_encode([TERMS_TYPE, "bytes"], [terms.as_tuple(), b'{"image":"x"}'])
    later = data[:288] + (352).to_bytes(32, "big") + bytes(32) + data[320:]  # spec a word later
    trailing = data + bytes(32)
    for variant in (later, trailing):
        raw = formatted_log(5, terms, variant)
        assert events._canonical(variant) is None
        decoded = DECODER.decode(raw)
        assert outcome(decoded) == outcome(SLOW.decode(raw))
        assert outcome(DECODER.decode(json_log(raw))) == outcome(decoded)
        assert isinstance(decoded, NewJob) and decoded.spec == '{"image":"x"}'
        assert decoded.spec == CONTRACT.events.JobRequested().process_log(raw)["args"]["spec"]


@pytest.mark.parametrize("mutate", [
    lambda d: d[:100],  # truncated in the terms
    lambda d: d[:340],  # truncated in the spec's length
    lambda d: d[:-1],  # one byte short
    lambda d: b"\x00" * 40,
    lambda d: b"",
    lambda d: d[:288] + (2**255).to_bytes(32, "big") + d[320:],  # offset far out of range
    lambda d: d[:320] + (2**200).to_bytes(32, "big") + d[352:],  # length far out of range
    lambda d: d[:-1] + b"\x01",  # dirty padding after the spec
    lambda d: b"\x01" + d[1:],  # an address wider than 20 bytes
    lambda d: d[:255] + b"\x02" + d[256:],  # a bool that is neither 0 nor 1
])
def test_malformed_data_is_named_with_its_job_not_raised(mutate: Any) -> None:
    terms = random_terms(random.Random(2))
    data = abi_encode([TERMS_TYPE, "bytes"], [terms.as_tuple(), b'{"image":"x"}' * 3])
    raw = formatted_log(9, terms, mutate(data))
    decoded = DECODER.decode(raw)
    assert isinstance(decoded, UndecodableRequest)
    assert decoded.job_id == 9 and decoded.reason.startswith("event data does not decode")
    assert outcome(decoded) == outcome(SLOW.decode(raw))
    assert outcome(DECODER.decode(json_log(raw))) == outcome(decoded)


def test_random_mutations_decode_as_eth_abi_decodes_them() -> None:
    rnd = random.Random(7)
    fast = 0
    for job_id in range(3000):
        terms = random_terms(rnd)
        data = bytearray(abi_encode([TERMS_TYPE, "bytes"],
                                    [terms.as_tuple(), rnd.randbytes(rnd.choice([0, 5, 32, 70]))]))
        roll = rnd.random()
        if roll < 0.4:
            for _ in range(rnd.randint(1, 3)):
                data[rnd.randrange(len(data))] = rnd.getrandbits(8)
        elif roll < 0.55:
            data = data[:rnd.randrange(len(data) + 1)]
        elif roll < 0.65:
            data += rnd.randbytes(rnd.choice([1, 31, 32]))
        raw = formatted_log(job_id, terms, bytes(data))
        expected = outcome(SLOW.decode(raw))
        assert outcome(DECODER.decode(raw)) == expected
        assert outcome(DECODER.decode(json_log(raw))) == expected
        fast += events._canonical(bytes(data)) is not None
    assert 1000 < fast < 3000  # both paths were exercised


def test_a_spec_that_is_not_utf8_is_a_request_on_the_fast_path() -> None:
    terms = random_terms(random.Random(3))
    raw = formatted_log(4, terms, abi_encode([TERMS_TYPE, "bytes"],
                                             [terms.as_tuple(), b'{"image":"\xff"}']))
    assert events._canonical(bytes(raw["data"])) is not None
    for decoded in (DECODER.decode(raw), DECODER.decode(json_log(raw))):
        assert isinstance(decoded, NewJob) and decoded.job_id == 4
        assert decoded.reason is not None and decoded.reason.startswith("invalid spec: not UTF-8")
        assert outcome(decoded) == outcome(SLOW.decode(raw))


def test_wrong_topic_or_count_is_named() -> None:
    terms = random_terms(random.Random(4))
    raw = json_log(formatted_log(1, terms, abi_encode([TERMS_TYPE, "bytes"],
                                                      [terms.as_tuple(), b"{}"])))
    other = dict(raw, topics=["0x" + "ee" * 32, *raw["topics"][1:]])
    short = dict(raw, topics=raw["topics"][:3])
    for bad in (other, short):
        decoded = DECODER.decode(bad)
        assert isinstance(decoded, UndecodableRequest) and "4 topics" in decoded.reason


@pytest.mark.parametrize("field,value", [("data", "0xabc"), ("data", "nothex"),
                                         ("blockNumber", "0xzz"), ("topics", ["0x1"]),
                                         ("logIndex", None), ("blockHash", 7)])
def test_raw_fields_out_of_shape_are_named_not_raised(field: str, value: Any) -> None:
    terms = random_terms(random.Random(5))
    raw = json_log(formatted_log(1, terms, abi_encode([TERMS_TYPE, "bytes"],
                                                      [terms.as_tuple(), b"{}"])))
    decoded = DECODER.decode(dict(raw, **{field: value}))
    assert isinstance(decoded, NewJob | UndecodableRequest)  # never an exception
    if field != "logIndex":  # a missing log index reads as 0, as before
        assert isinstance(decoded, UndecodableRequest)
