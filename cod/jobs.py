"""Requesting and cancelling jobs from a user's key (`cod docker run`, `cod job cancel`).

Everything that would make the chain revert is checked first, with a message saying what to do;
a revert that still happens is decoded from the contract's custom errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from eth_abi.abi import decode as abi_decode
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD

from bridge.chain import (
    JobStatus,
    OnChainJob,
    TxSender,
    connect,
    job_manager,
    load_artifact,
    read_job,
)
from bridge.config import BridgeSettings
from protocol.spec import JobSpec, SpecError, parse_spec

MAX_SPEC_BYTES = 8192  # JobManager.MAX_SPEC_BYTES
ZERO_ADDRESS = "0x" + "0" * 40
_UNITS = {"wei": 1, "gwei": 10**9, "eth": 10**18, "ether": 10**18}


def read_existing_job(manager: Contract, job_id: int) -> OnChainJob:
    """The job's on-chain state; NoSuchJob if the contract never had it."""
    job = read_job(manager, job_id)
    if job.status == JobStatus.NONE:
        last = int(manager.functions.nextJobId().call()) - 1
        raise NoSuchJob(f"job {job_id} does not exist (the last job is {last})")
    return job


class NoSuchJob(LookupError):
    """The job id was never issued by this JobManager."""


class RequestRefused(RuntimeError):
    """The chain refused (or would refuse) the transaction; the message says why and what to do."""


@dataclass(frozen=True)
class Requested:
    job_id: int
    tx_hash: str
    block_number: int
    fee_wei: int
    deadline: int


@dataclass(frozen=True)
class Cancelled:
    job_id: int
    tx_hash: str
    refunded_wei: int  # withdrawn to the requester (0 with withdraw=False)


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
    text = spec.to_json()
    parse_spec(text)
    size = len(text.encode())
    if size > MAX_SPEC_BYTES:
        raise SpecError(f"invalid spec: {size} bytes; the JobManager accepts at most "
                        f"{MAX_SPEC_BYTES} (put long scripts in an input file)")
    return text


class JobClient:
    """The JobManager seen from one user's key (the key is needed only to send)."""

    def __init__(self, settings: BridgeSettings, w3: Web3 | None = None) -> None:
        self.settings = settings
        self.w3 = w3 or connect(settings.rpc_url)
        self.manager: Contract = job_manager(self.w3, settings.require_contract())
        self._sender: TxSender | None = None

    @property
    def sender(self) -> TxSender:
        if self._sender is None:
            self._sender = TxSender(self.w3, self.settings.require_key(),
                                    self.settings.max_fee_gwei, self.settings.priority_fee_gwei,
                                    self.settings.receipt_timeout_s)
        return self._sender

    def min_fee(self) -> int:
        return int(self.manager.functions.minFee().call())

    def read(self, job_id: int) -> OnChainJob:
        return read_existing_job(self.manager, job_id)

    def request(self, spec: JobSpec, fee_wei: int | None = None, consumer: str = ZERO_ADDRESS,
                callback_gas: int = 0) -> Requested:
        text = validate_spec(spec)
        # the minimum, plus the callback's gas at the contract's price when there is a consumer
        minimum = int(self.manager.functions.quoteFee(Web3.to_checksum_address(consumer),
                                                      callback_gas).call())
        fee = minimum if fee_wei is None else fee_wei
        if fee < minimum:
            raise RequestRefused(f"fee {fee} wei is below the JobManager's minimum of {minimum} "
                                 f"wei for this request: pass --fee {minimum} or more")
        if bool(self.manager.functions.paused().call()):
            raise RequestRefused("the JobManager is paused: no new jobs are accepted")
        sender = self.sender  # may raise: no key
        balance = int(self.w3.eth.get_balance(Web3.to_checksum_address(sender.address)))
        if balance < fee:
            raise RequestRefused(f"{sender.address} holds {format_wei(balance)}, less than the "
                                 f"fee of {format_wei(fee)}: fund it or use another key")
        call = self.manager.functions.requestJob(text, Web3.to_checksum_address(consumer),
                                                 callback_gas)
        receipt = self._transact(call, value=fee)
        event = self.manager.events.JobRequested().process_receipt(receipt, errors=DISCARD)[0]
        return Requested(job_id=int(event["args"]["jobId"]),
                         tx_hash=receipt["transactionHash"].to_0x_hex(),
                         block_number=int(receipt["blockNumber"]), fee_wei=fee,
                         deadline=int(event["args"]["deadline"]))

    def cancel(self, job_id: int, withdraw: bool = True) -> Cancelled:
        """Cancel a job past its deadline and (by default) withdraw the refund to the key."""
        job = self.read(job_id)
        me = self.sender.address
        if job.requester.lower() != me.lower():
            raise RequestRefused(f"job {job_id} was requested by {job.requester}, not by {me}: "
                                 "only its requester can cancel it (set COD_PRIVATE_KEY)")
        if job.status != JobStatus.REQUESTED:
            raise RequestRefused(f"job {job_id} is already {job.status.name.lower()}: "
                                 "nothing to cancel")
        now = int(self.w3.eth.get_block("latest")["timestamp"])
        if now <= job.deadline:
            raise RequestRefused(f"job {job_id} can be cancelled only after its deadline, "
                                 f"{_iso(job.deadline)} (in {job.deadline - now + 1} s); "
                                 "until then the bridge may still deliver its result")
        receipt = self._transact(self.manager.functions.cancelJob(job_id))
        refunded = 0
        if withdraw:
            owed = int(self.manager.functions.withdrawable(me).call())
            if owed:
                self._transact(self.manager.functions.withdraw())
                refunded = owed
        return Cancelled(job_id, receipt["transactionHash"].to_0x_hex(), refunded)

    def _transact(self, call: Any, value: int = 0) -> Any:
        try:
            return self.sender.transact(call, value=value)
        except (ContractCustomError, ContractLogicError) as exc:
            raise RequestRefused(describe_revert(exc)) from None


def describe_revert(exc: Exception) -> str:
    """A contract custom error as a sentence (`JobManagerFeeTooLow(fee=1, minFee=…)`)."""
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
        abi: list[dict[str, Any]] = load_artifact("JobManager")["abi"]
        for item in abi:
            if item.get("type") != "error":
                continue
            types = [i["type"] for i in item.get("inputs", [])]
            selector = Web3.keccak(text=f"{item['name']}({','.join(types)})")[:4].hex()
            if data[2:10] == selector.removeprefix("0x"):
                values = abi_decode(types, bytes.fromhex(data[10:]))
                args = ", ".join(f"{i['name']}={v}" for i, v in zip(item["inputs"], values,
                                                                   strict=True))
                return f"the JobManager refused: {item['name']}({args})"
    return f"the JobManager refused: {exc}"


def _iso(timestamp: int) -> str:
    from datetime import UTC, datetime
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
