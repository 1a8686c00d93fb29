"""A request's `Terms` (JobManager v2): what `JobRequested` emits and every later call quotes back.

The contract stores only `bytes20(keccak256(abi.encode(terms)))` per job; the bridge keeps the
terms in its ledger (one column each) and rebuilds them here, so a claim or a settlement quotes
exactly what the chain checks, and the bridge can tell locally whether the job on-chain under an id
is still the request it recorded (the digests match) without a call per field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

# The ABI of `IJobManager.Terms`, in field order (the order is the encoding).
TERMS_FIELDS: tuple[tuple[str, str], ...] = (
    ("requester", "address"), ("consumer", "address"), ("fee", "uint96"),
    ("deadline", "uint64"), ("callbackGasLimit", "uint32"), ("replicas", "uint8"),
    ("lease", "uint32"), ("restricted", "bool"), ("requestHash", "bytes32"),
)
TERMS_TYPE = "(" + ",".join(t for _, t in TERMS_FIELDS) + ")"


class TermsRow(Protocol):
    """The ledger columns a `Terms` is rebuilt from (`bridge.ledger.Job`)."""

    requester: str
    consumer: str
    fee_wei: str
    deadline: int
    callback_gas_limit: int
    replicas: int
    lease_s: int
    restricted: bool
    request_hash: str | None


@dataclass(frozen=True)
class Terms:
    requester: str
    consumer: str
    fee: int
    deadline: int
    callback_gas_limit: int
    replicas: int
    lease: int
    restricted: bool
    request_hash: bytes  # 32 bytes

    @classmethod
    def from_event(cls, values: dict[str, Any]) -> Terms:
        """From the decoded `terms` tuple of `JobRequested`, keyed by ABI field name."""
        return cls(requester=to_checksum_address(values["requester"]),
                   consumer=to_checksum_address(values["consumer"]), fee=int(values["fee"]),
                   deadline=int(values["deadline"]),
                   callback_gas_limit=int(values["callbackGasLimit"]),
                   replicas=int(values["replicas"]), lease=int(values["lease"]),
                   restricted=bool(values["restricted"]),
                   request_hash=bytes(values["requestHash"]))

    @classmethod
    def from_row(cls, row: TermsRow) -> Terms:
        """From a ledger row (what the listener recorded from the event)."""
        return cls(requester=to_checksum_address(row.requester),
                   consumer=to_checksum_address(row.consumer), fee=int(row.fee_wei),
                   deadline=int(row.deadline), callback_gas_limit=int(row.callback_gas_limit),
                   replicas=int(row.replicas), lease=int(row.lease_s),
                   restricted=bool(row.restricted),
                   request_hash=bytes.fromhex((row.request_hash or "").removeprefix("0x")))

    def as_tuple(self) -> tuple[Any, ...]:
        """The value web3 takes for a `Terms` argument (a tuple in ABI field order)."""
        return (self.requester, self.consumer, self.fee, self.deadline, self.callback_gas_limit,
                self.replicas, self.lease, self.restricted, self.request_hash)

    def digest(self) -> bytes:
        """`JobManager.hashTerms(terms)`: the 20 bytes stored while the job is open."""
        return keccak(abi_encode([TERMS_TYPE], [self.as_tuple()]))[:20]


def result_digest(result_cid: str, exit_code: int, result: bytes = b"") -> bytes:
    """`JobManager.resultHash(...)`: the 20 bytes stored once a job completed with this result
    (so the bridge can tell whether a batch item settled with our result, or was skipped)."""
    return keccak(abi_encode(["string", "uint8", "bytes"], [result_cid, exit_code, result]))[:20]


def commitment_of(job_id: int, operator: str, result_cid: str, exit_code: int, result: bytes,
                  salt: bytes) -> bytes:
    """`JobManager.commitmentOf(...)`: what a replica commits before it reveals. It binds the
    operator, so a commitment copied from the mempool opens for nobody else."""
    return keccak(abi_encode(["uint256", "address", "string", "uint8", "bytes", "bytes32"],
                             [job_id, to_checksum_address(operator), result_cid, exit_code,
                              result, salt]))
