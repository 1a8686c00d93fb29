"""Requesting and cancelling jobs from a user's key (`cod docker run`, `cod job cancel`).

Everything that would make the chain revert is checked first, with a message saying what to do;
a revert that still happens is decoded from the contract's custom errors.

JobManager v2 stores no terms per job (requester, fee, deadline, …): they are read from the job's
`JobRequested` event and quoted back (`cancelJob(jobId, terms)`), checked against the chain's
digest first.

The checks that need no chain live in `cod.options` (`--dry-run` uses them without web3); they
are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from eth_abi.abi import decode as abi_decode
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError

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
from bridge.events import RequestDecoder, UndecodableRequest
from bridge.ledger import NewJob
from bridge.logscan import LogScanner
from bridge.terms import Terms
from cod.nonces import SharedNonceSender
from cod.options import LEASE_MARGIN_S as LEASE_MARGIN_S
from cod.options import MAX_CLAIMERS as MAX_CLAIMERS
from cod.options import MAX_REPLICAS as MAX_REPLICAS
from cod.options import MAX_SPEC_BYTES as MAX_SPEC_BYTES
from cod.options import MIN_LEASE as MIN_LEASE
from cod.options import RequestOptions as RequestOptions
from cod.options import format_wei as format_wei
from cod.options import lease_for as lease_for
from cod.options import parse_fee as parse_fee
from cod.options import request_options as request_options
from cod.options import validate_spec as validate_spec
from protocol.spec import JobSpec

ZERO_ADDRESS = "0x" + "0" * 40


def read_existing_job(manager: Contract, job_id: int) -> OnChainJob:
    """The job's on-chain state; NoSuchJob if the contract never had it."""
    job = read_job(manager, job_id)
    if job.status == JobStatus.NONE:
        last = int(manager.functions.nextJobId().call()) - 1
        raise NoSuchJob(f"job {job_id} does not exist (the last job is {last})")
    return job


def terms_of(request: NewJob) -> Terms:
    """The `Terms` a decoded `JobRequested` carried (what every later call quotes back)."""
    return Terms(requester=Web3.to_checksum_address(request.requester),
                 consumer=Web3.to_checksum_address(request.consumer), fee=int(request.fee_wei),
                 deadline=int(request.deadline), callback_gas_limit=int(request.callback_gas_limit),
                 replicas=int(request.replicas), lease=int(request.lease_s),
                 restricted=bool(request.restricted),
                 request_hash=bytes.fromhex((request.request_hash or "").removeprefix("0x")))


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
    terms: Terms | None = None


@dataclass(frozen=True)
class Cancelled:
    job_id: int
    tx_hash: str
    refunded_wei: int  # withdrawn to the requester (0 with withdraw=False)


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
            # many `cod` processes may send from this key at once: the nonce is shared
            self._sender = SharedNonceSender(self.w3, self.settings.require_key(),
                                    self.settings.max_fee_gwei, self.settings.priority_fee_gwei,
                                    self.settings.receipt_timeout_s)
        return self._sender

    def min_fee(self) -> int:
        return int(self.manager.functions.minFee().call())

    def read(self, job_id: int) -> OnChainJob:
        return read_existing_job(self.manager, job_id)

    def request(self, spec: JobSpec, fee_wei: int | None = None, consumer: str = ZERO_ADDRESS,
                callback_gas: int = 0, replicas: int = 1, lease_s: int = 0,
                claimers: Sequence[str] = ()) -> Requested:
        """Request `spec`: `requestJob` with the defaults, else `requestJobWith` and its Options
        (`replicas` 1..MAX_REPLICAS, `lease_s` 0 for the default, `claimers` empty for any
        staked operator). The fee defaults to `quoteFee(consumer, gas, replicas)`."""
        text = validate_spec(spec)
        try:
            options = request_options(replicas, lease_s, claimers)
        except ValueError as exc:
            raise RequestRefused(str(exc)) from None
        window = int(self.manager.functions.jobWindow().call())
        if not options.lease_s:  # the lease follows the job's own timeout
            needed = lease_for(spec.timeout)
            if needed > int(self.manager.functions.defaultLease().call()):
                options = replace(options, lease_s=min(needed, window))
        if options.lease_s > window:
            raise RequestRefused(f"lease {options.lease_s} s is longer than the JobManager's "
                                 f"job window of {window} s: pass --lease {window} or less")
        # the minimum per replica, plus the callback's gas at the contract's price when there is
        # a consumer, times the replicas
        minimum = int(self.manager.functions.quoteFee(Web3.to_checksum_address(consumer),
                                                      callback_gas, options.replicas).call())
        fee = minimum if fee_wei is None else fee_wei
        if fee < minimum:
            per = f" ({options.replicas} replicas)" if options.replicas > 1 else ""
            raise RequestRefused(f"fee {fee} wei is below the JobManager's minimum of {minimum} "
                                 f"wei for this request{per}: pass --fee {minimum} or more")
        if bool(self.manager.functions.paused().call()):
            raise RequestRefused("the JobManager is paused: no new jobs are accepted")
        sender = self.sender  # may raise: no key
        balance = int(self.w3.eth.get_balance(Web3.to_checksum_address(sender.address)))
        if balance < fee:
            raise RequestRefused(f"{sender.address} holds {format_wei(balance)}, less than the "
                                 f"fee of {format_wei(fee)}: fund it or use another key")
        if options.default:
            call = self.manager.functions.requestJob(text, Web3.to_checksum_address(consumer),
                                                     callback_gas)
        else:
            call = self.manager.functions.requestJobWith(
                text, Web3.to_checksum_address(consumer), callback_gas, options.as_tuple())
        receipt = self._transact(call, value=fee)
        decoder = RequestDecoder.from_abi(self.manager.abi)
        request = next(
            (decoded for log in receipt["logs"]
             if str(log["address"]).lower() == str(self.manager.address).lower()
             and log["topics"] and bytes(log["topics"][0]) == decoder.topic
             and isinstance(decoded := decoder.decode(log), NewJob)), None)
        if request is None:
            raise RequestRefused(f"transaction {receipt['transactionHash'].to_0x_hex()} emitted "
                                 "no JobRequested event of this JobManager")
        return Requested(job_id=request.job_id, tx_hash=receipt["transactionHash"].to_0x_hex(),
                         block_number=int(receipt["blockNumber"]), fee_wei=fee,
                         deadline=request.deadline, terms=terms_of(request))

    def terms(self, job_id: int, job: OnChainJob | None = None) -> Terms:
        """The job's terms, from its `JobRequested` event (scanned newest first from the head,
        within the log-scan budget), checked against the chain's digest while the job is open."""
        job = job or self.read(job_id)
        scanner = LogScanner(self.w3, self.manager, self.settings.log_chunk_blocks)
        found = scanner.find_request(job_id, self.settings.start_block,
                                     int(self.w3.eth.block_number))
        if found is None or isinstance(found.decoded, UndecodableRequest):
            why = (f"it does not decode: {found.decoded.reason}" if found is not None
                   else "not found within the log-scan budget (set COD_START_BLOCK closer)")
            raise RequestRefused(f"the request of job {job_id} (its JobRequested event) is "
                                 f"needed for its terms, and {why}")
        terms = terms_of(found.decoded)
        if job.status.open and terms.digest() != job.digest:
            raise RequestRefused(f"the JobRequested event found for job {job_id} does not match "
                                 "the job on-chain (its terms digest differs)")
        return terms

    def cancel(self, job_id: int, withdraw: bool = True) -> Cancelled:
        """Cancel a job past its deadline and (by default) withdraw the refund to the key."""
        job = self.read(job_id)
        if not job.status.open:
            raise RequestRefused(f"job {job_id} is already {job.status.name.lower()}: "
                                 "nothing to cancel")
        if job.status == JobStatus.REVEALING:
            raise RequestRefused(f"job {job_id}'s replicas are revealing their results: it "
                                 "cannot be cancelled (anyone may finalize it after the reveal "
                                 "window)")
        terms = self.terms(job_id, job)
        me = self.sender.address
        if terms.requester.lower() != me.lower():
            raise RequestRefused(f"job {job_id} was requested by {terms.requester}, not by {me}: "
                                 "only its requester can cancel it (set COD_PRIVATE_KEY)")
        now = int(self.w3.eth.get_block("latest")["timestamp"])
        if now <= terms.deadline:
            raise RequestRefused(f"job {job_id} can be cancelled only after its deadline, "
                                 f"{_iso(terms.deadline)} (in {terms.deadline - now + 1} s); "
                                 "until then an operator may still deliver its result")
        receipt = self._transact(self.manager.functions.cancelJob(job_id, terms.as_tuple()))
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
