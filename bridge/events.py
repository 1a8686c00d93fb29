"""Decoding `JobRequested` logs one at a time, from raw bytes, as hostile input.

Solidity does not check that a `string` is UTF-8, so web3's own decoder raises on a request whose
spec holds invalid bytes, and a range read with `get_logs` fails as a whole. Here the listener
fetches raw logs and decodes each one on its own: the spec is read as `bytes` (a string's ABI layout
is the same) and only then as UTF-8. A request whose spec is not UTF-8 is still a request — it is
recorded and failed on-chain with that reason; a log that cannot be decoded at all (not one the
contract can emit) names what is wrong, and never stops the range.

JobManager v2: `JobRequested(jobId, requester, consumer, Terms terms, string spec)`. The terms are
decoded in full (`bridge.terms.Terms`) and recorded, since every later call must quote them back.

A log's fields may be bytes (web3's formatted logs) or hex strings (a raw `eth_getLogs` answer, as
the listener reads them). The data of a log the contract emits is the canonical ABI encoding, read
here field by field from fixed offsets (`_canonical`, ~20× faster than `eth_abi.decode`); anything
else — other offsets, trailing bytes, dirty padding, truncation — goes through `eth_abi.decode`,
so its outcome (values or the reason it does not decode) is exactly eth_abi's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.abi import event_abi_to_log_topic
from eth_utils.address import to_checksum_address

from bridge.ledger import NewJob
from bridge.terms import TERMS_FIELDS, TERMS_TYPE, Terms

EVENT = "JobRequested"


@dataclass(frozen=True)
class UndecodableRequest:
    """A log with the `JobRequested` topic that does not decode: why, and where it was."""

    reason: str
    block_number: int
    tx_hash: str
    log_index: int
    job_id: int | None = None  # when the indexed id could still be read


@dataclass(frozen=True)
class RequestDecoder:
    """Decodes one contract's `JobRequested` logs, following the event's ABI."""

    topic: bytes
    names: tuple[str, ...]  # the non-indexed fields, in data order
    types: tuple[str, ...]  # their ABI types, with a top-level `string` read as `bytes`
    terms_names: tuple[str, ...] = ()  # the fields of the `terms` tuple, in ABI order

    @cached_property
    def canonical(self) -> bool:
        """Whether the event is the v2 one `_canonical` reads (else eth_abi decodes every log)."""
        return (self.names == ("terms", "spec") and self.types == (TERMS_TYPE, "bytes")
                and self.terms_names == tuple(name for name, _ in TERMS_FIELDS))

    @classmethod
    def from_abi(cls, abi: Sequence[Mapping[str, Any]]) -> RequestDecoder:
        event = next(e for e in abi if e.get("type") == "event" and e.get("name") == EVENT)
        data = [i for i in event["inputs"] if not i.get("indexed")]
        terms = next((i for i in data if i["name"] == "terms"), None)
        return cls(topic=bytes(event_abi_to_log_topic(event)),  # type: ignore[arg-type]
                   names=tuple(str(i["name"]) for i in data),
                   types=tuple("bytes" if i["type"] == "string" else _abi_type(i) for i in data),
                   terms_names=tuple(str(c["name"]) for c in terms["components"]) if terms else ())

    def decode(self, raw: Mapping[str, Any]) -> NewJob | UndecodableRequest:
        """A `NewJob` (its `reason` set when the request is to be failed as it stands), or an
        `UndecodableRequest`. Never raises on a log's content."""
        try:
            where = _where(raw)
            topics = list(raw.get("topics") or [])
            # the indexed requester and consumer are not read: the terms hold them
            first, job_word = (_bytes(t) for t in topics[:2]) if len(topics) == 4 else (b"", b"")
            data = _bytes(raw.get("data") or b"")
            block_hash = _hex(raw.get("blockHash") or b"")
        except Exception as exc:  # a field that is not bytes, hex or a number
            return UndecodableRequest(f"log fields out of shape: {type(exc).__name__}: "
                                      f"{str(exc)[:200]}", 0, "", 0)
        if len(topics) != 4 or first != self.topic:
            return UndecodableRequest(f"expected 4 topics starting with {EVENT}'s, got "
                                      f"{len(topics)}", *where)
        job_id = int.from_bytes(job_word, "big")
        fast = _canonical(data) if self.canonical else None
        if fast is not None:
            terms, spec_bytes = fast
        else:
            try:
                values = dict(zip(self.names, abi_decode(list(self.types), data), strict=True))
            except Exception as exc:  # eth_abi raises several types on malformed data
                return UndecodableRequest(f"event data does not decode: {type(exc).__name__}: "
                                          f"{str(exc)[:200]}", *where, job_id=job_id)
            try:
                terms = Terms.from_event(dict(zip(self.terms_names, values["terms"], strict=True)))
            except Exception as exc:  # no terms (not a v2 event) or a field out of shape
                return UndecodableRequest(f"terms do not decode: {type(exc).__name__}: "
                                          f"{str(exc)[:200]}", *where, job_id=job_id)
            spec_bytes = bytes(values["spec"])
        reason = None
        try:
            spec = spec_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            spec = spec_bytes.decode("utf-8", errors="backslashreplace")
            reason = f"invalid spec: not UTF-8 text (byte {exc.start}: {exc.reason})"
        return NewJob(
            job_id=job_id,
            # the indexed copies and the terms' own fields are one value in a log the contract
            # emits; the terms are what every call is checked against, so they are recorded
            requester=terms.requester,
            consumer=terms.consumer,
            spec=spec,
            fee_wei=terms.fee,
            deadline=terms.deadline,
            block_number=where[0],
            block_hash=block_hash,
            tx_hash=where[1],
            log_index=where[2],
            callback_gas_limit=terms.callback_gas_limit,
            request_hash="0x" + terms.request_hash.hex(),
            reason=reason,
            replicas=terms.replicas,
            lease_s=terms.lease,
            restricted=terms.restricted,
        )


def _abi_type(item: Mapping[str, Any]) -> str:
    """The canonical ABI type of an ABI input (a tuple spelled out from its components)."""
    kind = str(item["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in item["components"])
        return f"({inner}){kind[len('tuple'):]}"  # keeps an array suffix (`tuple[]`)
    return kind


def _where(raw: Mapping[str, Any]) -> tuple[int, str, int]:
    return (_int(raw.get("blockNumber") or 0), _hex(raw.get("transactionHash") or b""),
            _int(raw.get("logIndex") or 0))


def _int(value: Any) -> int:
    """A quantity: an int (formatted log) or a `0x…` hex string (raw JSON-RPC)."""
    return int(value, 16) if isinstance(value, str) else int(value)


def _bytes(value: Any) -> bytes:
    """Binary data: bytes (formatted log) or a `0x…` hex string (raw JSON-RPC)."""
    if isinstance(value, str):
        return bytes.fromhex(value.removeprefix("0x"))
    if isinstance(value, bytes | bytearray | memoryview):  # HexBytes is bytes
        return bytes(value)
    raise TypeError(f"expected bytes or a hex string, got {type(value).__name__}")


def _hex(value: Any) -> str:
    """`0x…` lowercase hex, as `Web3.to_hex` writes bytes."""
    return "0x" + _bytes(value).hex()


# The canonical encoding of `(Terms terms, bytes spec)`: the nine words of the (static) terms, the
# spec's offset (always 10 words), then its length and its bytes zero-padded to a whole word.
_HEAD = 32 * (len(TERMS_FIELDS) + 1)
_VALUE_BYTES = {"address": 20, "uint96": 12, "uint64": 8, "uint32": 4, "uint8": 1, "bool": 1,
                "bytes32": 32}
# the bytes of the head that are zero in a canonical encoding: each word's padding, the top of
# the offset word
_ZERO_MASK = int.from_bytes(b"".join(
    b"\xff" * (32 - _VALUE_BYTES[kind]) + bytes(_VALUE_BYTES[kind]) for _, kind in TERMS_FIELDS
) + b"\xff" * 32, "big")


def _canonical(data: bytes) -> tuple[Terms, bytes] | None:
    """The terms and spec of canonically encoded event data; None for anything else (the caller
    falls back to `eth_abi.decode`). Accepts only encodings eth_abi reads as the same values."""
    if len(data) < _HEAD + 32 or int.from_bytes(data[:_HEAD], "big") & _ZERO_MASK != _HEAD:
        return None  # a value wider than its type, or a spec offset other than right after the head
    if data[255] > 1:  # `restricted`: a bool is 0 or 1
        return None
    length = int.from_bytes(data[_HEAD:_HEAD + 32], "big")
    end = _HEAD + 32 + length
    if len(data) != end + (-length % 32) or any(data[end:]):
        return None  # truncated, trailing bytes, or padding that is not zero
    word = [data[i:i + 32] for i in range(0, _HEAD - 32, 32)]
    terms = Terms(requester=_checksum(word[0][12:]), consumer=_checksum(word[1][12:]),
                  fee=int.from_bytes(word[2], "big"), deadline=int.from_bytes(word[3], "big"),
                  callback_gas_limit=int.from_bytes(word[4], "big"),
                  replicas=word[5][31], lease=int.from_bytes(word[6], "big"),
                  restricted=word[7][31] == 1, request_hash=word[8])
    return terms, data[_HEAD + 32:end]


@lru_cache(maxsize=4096)  # requesters and consumers repeat; checksumming costs a keccak
def _checksum(address: bytes) -> str:
    return to_checksum_address("0x" + address.hex())


def decode_request(contract: Any, raw: Mapping[str, Any]) -> NewJob | UndecodableRequest:
    """Decode one raw `JobRequested` log of `contract` (a web3 contract, or anything with `.abi`).
    In a loop, build one `RequestDecoder` and call its `decode` instead."""
    return RequestDecoder.from_abi(contract.abi).decode(raw)
