"""What a node hands back to the bridge for one task: the outcome, sent as a dict over Celery's
result backend (and signed by the node, `protocol.attestation`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

MAX_RESULT_BYTES = 256  # as `protocol.spec.MAX_RESULT_BYTES` and the contract's bound


class OutcomeStatus(StrEnum):
    COMPLETED = "completed"  # the job ran (whatever its exit code) and its result was published
    FAILED = "failed"  # the job could not run or its result could not be kept; `reason` says why
    SUPERSEDED = "superseded"  # the bridge re-routed the task elsewhere; this node skipped it


@dataclass(frozen=True)
class JobOutcome:
    """What the executor hands back to the bridge."""

    job_key: str
    status: OutcomeStatus
    node: str
    result_cid: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    duration_s: float = 0.0
    cached: bool = False  # the result of an identical earlier job, not run again
    inputs_local: bool | None = None  # every IPFS input was pinned on this node before the job
    input_bytes_fetched: int | None = None  # bytes this node's Kubo received while fetching
    # the small result (the spec's `result` file), hex without 0x, "" for none; ≤ 256 bytes
    result: str = ""

    def __post_init__(self) -> None:
        self.result_bytes()  # ValueError for anything but ≤ 256 bytes of hex

    def result_bytes(self) -> bytes:
        """The small result, as delivered on-chain."""
        if not isinstance(self.result, str):
            raise ValueError("malformed outcome: result is not a hex string")
        try:
            data = bytes.fromhex(self.result)
        except ValueError:
            raise ValueError("malformed outcome: result is not a hex string") from None
        if len(data) > MAX_RESULT_BYTES:
            raise ValueError(f"malformed outcome: result over {MAX_RESULT_BYTES} bytes")
        return data

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> JobOutcome:
        """The outcome a node sent (its signature already checked); ValueError if malformed."""
        try:
            return cls(**{**fields, "status": OutcomeStatus(str(fields.get("status")))})
        except TypeError as exc:
            raise ValueError(f"malformed outcome: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        return data
