"""Decoding `JobRequested` logs one at a time, from raw bytes, as hostile input.

Solidity does not check that a `string` is UTF-8, so web3's own decoder raises on a request whose
spec holds invalid bytes, and a range read with `get_logs` fails as a whole. Here the listener
fetches raw logs and decodes each one on its own: the spec is read as `bytes` (a string's ABI layout
is the same) and only then as UTF-8. A request whose spec is not UTF-8 is still a request — it is
recorded and failed on-chain with that reason; a log that cannot be decoded at all (not one the
contract can emit) names what is wrong, and never stops the range.

JobManager v2: `JobRequested(jobId, requester, consumer, Terms terms, string spec)`. The terms are
decoded in full (`bridge.terms.Terms`) and recorded, since every later call must quote them back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.abi import event_abi_to_log_topic
from web3 import Web3

from bridge.ledger import NewJob
from bridge.terms import Terms

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
        where = _where(raw)
        topics = [bytes(t) for t in raw.get("topics") or []]
        if len(topics) != 4 or topics[0] != self.topic:
            return UndecodableRequest(f"expected 4 topics starting with {EVENT}'s, got "
                                      f"{len(topics)}", *where)
        job_id = int.from_bytes(topics[1], "big")
        try:
            values = dict(zip(self.names, abi_decode(list(self.types), bytes(raw["data"])),
                              strict=True))
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
            block_hash=Web3.to_hex(raw["blockHash"]),
            tx_hash=where[1],
            log_index=where[2],
            callback_gas_limit=terms.callback_gas_limit,
            request_hash=Web3.to_hex(terms.request_hash),
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
    return (int(raw.get("blockNumber") or 0), Web3.to_hex(raw.get("transactionHash") or b""),
            int(raw.get("logIndex") or 0))


def decode_request(contract: Any, raw: Mapping[str, Any]) -> NewJob | UndecodableRequest:
    """Decode one raw `JobRequested` log of `contract` (a web3 contract, or anything with `.abi`).
    In a loop, build one `RequestDecoder` and call its `decode` instead."""
    return RequestDecoder.from_abi(contract.abi).decode(raw)
