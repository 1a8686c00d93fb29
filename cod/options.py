"""A request's checks that need no chain: the JobManager's bounds, `Options`, fees, the spec's size.

Kept apart from `cod.jobs` (web3) so `cod docker run --dry-run` checks everything without loading
the chain stack; `cod.jobs` re-exports these names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from protocol.spec import JobSpec

MAX_SPEC_BYTES = 8192  # JobManager.MAX_SPEC_BYTES
MAX_REPLICAS = 7  # JobManager.MAX_REPLICAS
MIN_LEASE = 60  # JobManager.MIN_LEASE (seconds); the most is the JobManager's jobWindow
MAX_CLAIMERS = 32  # JobManager.MAX_CLAIMERS
LEASE_MARGIN_S = 300  # a lease covers the run plus fetching inputs, publishing and settling
_UNITS = {"wei": 1, "gwei": 10**9, "eth": 10**18, "ether": 10**18}


@dataclass(frozen=True)
class RequestOptions:
    """`IJobManager.Options`: how many operators run the job (commit-reveal when more than one),
    the lease of a claim in seconds (0: the JobManager's default), and who may claim it (empty:
    any staked operator)."""

    replicas: int = 1
    lease_s: int = 0
    claimers: tuple[str, ...] = ()

    @property
    def default(self) -> bool:
        """Plain `requestJob` (one replica, the default lease, any operator)."""
        return self.replicas == 1 and self.lease_s == 0 and not self.claimers

    def as_tuple(self) -> tuple[int, int, list[str]]:
        return (self.replicas, self.lease_s, list(self.claimers))

    def describe(self) -> str:
        """One line: what the request asks of the network."""
        lease = f"{self.lease_s} s" if self.lease_s else "the JobManager's default"
        who = ", ".join(self.claimers) if self.claimers else "any staked operator"
        call = "requestJob" if self.default else "requestJobWith"
        return f"replicas {self.replicas}, lease {lease}, claimers {who} ({call})"


def request_options(replicas: int = 1, lease_s: int = 0, claimers: Sequence[str] = ()
                    ) -> RequestOptions:
    """Checked options (ValueError with a one-line message when out of the contract's bounds);
    claimers are checksummed and deduplicated."""
    if isinstance(replicas, bool) or not isinstance(replicas, int) \
            or not 1 <= replicas <= MAX_REPLICAS:
        raise ValueError(f"replicas must be 1..{MAX_REPLICAS}, got {replicas!r}")
    if isinstance(lease_s, bool) or not isinstance(lease_s, int) \
            or (lease_s != 0 and lease_s < MIN_LEASE):
        raise ValueError(f"lease must be at least {MIN_LEASE} seconds (or 0 for the default), "
                         f"got {lease_s!r}")
    checked: list[str] = []
    if claimers:  # eth_utils costs ~0.2 s to import: only when there is an address to check
        from eth_utils.address import is_address, to_checksum_address

        for claimer in claimers:
            if not is_address(claimer):
                raise ValueError(f"claimer {claimer!r} is not an address (0x + 40 hex digits)")
            if int(claimer, 16) == 0:
                raise ValueError("a claimer cannot be the zero address")
            address = to_checksum_address(claimer)
            if address not in checked:
                checked.append(address)
    if len(checked) > MAX_CLAIMERS:
        raise ValueError(f"at most {MAX_CLAIMERS} claimers, got {len(checked)}")
    return RequestOptions(replicas, lease_s, tuple(checked))


def lease_for(timeout_s: int) -> int:
    """The lease a job with this timeout needs: when it is longer than the JobManager's default
    lease, a request without `--lease` asks for this one (capped by the job window)."""
    return timeout_s + LEASE_MARGIN_S


def parse_fee(text: str) -> int:
    """`1000000000000000`, `1e15`, `0.001ether`, `0.001 ETH`, `1000000gwei` → wei."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)\s*", text)
    unit = (match.group(2).lower() or "wei") if match else ""
    if not match or unit not in _UNITS:
        raise ValueError(f"not a fee: {text!r} (use wei, or e.g. 0.001ether, 1000000gwei)")
    try:
        wei = Decimal(match.group(1)) * _UNITS[unit]
    except InvalidOperation:
        raise ValueError(f"not a fee: {text!r}") from None
    if wei != wei.to_integral_value() or wei < 0:
        raise ValueError(f"fee {text!r} is not a whole number of wei")
    return int(wei)


def format_wei(wei: int) -> str:
    return f"{Decimal(wei) / 10**18:f} ETH".replace(".000000000000000000 ", " ")


def validate_spec(spec: JobSpec) -> str:
    """The spec text to send, re-parsed exactly as the bridge will; SpecError if it would fail."""
    from protocol.spec import SpecError, parse_spec

    text = spec.to_json()
    parse_spec(text)
    size = len(text.encode())
    if size > MAX_SPEC_BYTES:
        raise SpecError(f"invalid spec: {size} bytes; the JobManager accepts at most "
                        f"{MAX_SPEC_BYTES} (put long scripts in an input file)")
    return text
