"""Chain access: web3 connection, contract artifacts shipped in the package, signed transactions."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from importlib import resources
from typing import Any

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.types import Nonce, TxParams, TxReceipt

GWEI = 10**9


def eip1559_fees(base_fee: int, tip: int, cap: int) -> tuple[int, int]:
    """(max fee, tip) per gas: `maxFee = 2 × baseFee + tip`, capped at `cap`; the tip is never more
    than the max fee. The one fee rule of `TxSender` and `bridge.txmanager.TxManager`."""
    max_fee = min(2 * base_fee + tip, cap)
    return max_fee, min(tip, max_fee)


class JobStatus(IntEnum):
    """Mirrors `IJobManager.JobStatus` (v2)."""

    NONE = 0
    REQUESTED = 1  # open, nobody holds it
    CLAIMED = 2  # held by a claimer (replicas = 1) / claim-commit phase (replicas > 1)
    REVEALING = 3  # replicas > 1: the reveal phase is open
    COMPLETED = 4
    FAILED = 5
    CANCELLED = 6

    @property
    def open(self) -> bool:
        """Still to be settled (a result or a failure may still be recorded)."""
        return self in (JobStatus.REQUESTED, JobStatus.CLAIMED, JobStatus.REVEALING)


ZERO_ADDRESS = "0x" + "0" * 40


@dataclass(frozen=True)
class OnChainJob:
    """`IJobManager.JobView`: the decoded job word. Everything else about a job (requester, fee,
    deadline, …) is in its `Terms`, which the contract does not store (see `bridge.terms`)."""

    status: JobStatus
    lease_end: int = 0  # the claim's lease end (replicas = 1), chain time
    claimer: str = ZERO_ADDRESS  # the current claimer (replicas = 1), else the zero address
    digest: bytes = bytes(20)  # terms digest while open, result digest once completed
    settle_pending: bool = False  # replicas > 1: completed, not yet finalized

    def held_by(self, account: str) -> bool:
        return self.status == JobStatus.CLAIMED and self.claimer.lower() == account.lower()

    def held_by_other(self, account: str, now: int) -> bool:
        """Claimed by someone else whose lease is live at chain time `now` (not ours to take)."""
        return (self.status == JobStatus.CLAIMED and self.claimer.lower() != account.lower()
                and now <= self.lease_end)


class ReplicaState(IntEnum):
    """Mirrors `IJobManager.ReplicaState`: one replica slot of a replicated job."""

    EMPTY = 0
    CLAIMED = 1
    COMMITTED = 2
    REVEALED = 3


@dataclass(frozen=True)
class ReplicaSlot:
    """`IJobManager.ReplicaView`: who holds a slot of a replicated job, until when, and how far."""

    operator: str
    lease_end: int
    state: ReplicaState
    commitment: bytes = bytes(32)
    answer: bytes = bytes(20)  # `resultHash` of its reveal, once revealed

    def held_by(self, account: str) -> bool:
        return self.state != ReplicaState.EMPTY and self.operator.lower() == account.lower()

    def lapsed(self, now: int) -> bool:
        """Claimed, not committed, past its lease: anyone else may take the slot over."""
        return self.state == ReplicaState.CLAIMED and now > self.lease_end


class ChainError(RuntimeError):
    """The chain refused or reverted what we asked."""


def load_artifact(name: str) -> dict[str, Any]:
    """ABI and bytecode compiled by Hardhat and exported into the package (no Node.js needed)."""
    text = resources.files("bridge").joinpath("artifacts", f"{name}.json").read_text()
    artifact: dict[str, Any] = json.loads(text)
    return artifact


def connect(rpc_url: str, timeout: float = 30.0) -> Web3:
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    if not w3.is_connected():
        raise ChainError(f"no RPC at {rpc_url}: start a node or set COD_RPC_URL")
    return w3


def job_manager(w3: Web3, address: str) -> Contract:
    abi = load_artifact("JobManager")["abi"]
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi)


def read_job(contract: Contract, job_id: int) -> OnChainJob:
    """`getJob(jobId)`: status `NONE` if the id was never issued."""
    raw = contract.functions.getJob(job_id).call()
    return OnChainJob(status=JobStatus(raw[0]), lease_end=int(raw[1]), claimer=str(raw[2]),
                      digest=bytes(raw[3]), settle_pending=bool(raw[4]))


class RpcError(ChainError):
    """One call of a JSON-RPC batch answered with an error object (the others may have worked)."""

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        self.method = method
        self.code = int(error.get("code", 0) or 0)
        self.data = error.get("data")
        super().__init__(f"{method}: {error.get('message', error)}"
                         + (f" ({self.data})" if self.data else ""))


RPC_BATCH_MAX = 500  # calls per HTTP request
_sessions = threading.local()


def rpc_batch(w3: Web3, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
    """Many JSON-RPC calls in one HTTP POST of a batch array (chunks of `RPC_BATCH_MAX`): each
    call's raw `result`, or an `RpcError` in its place. A provider that is not HTTP gets the
    calls one by one. A transport failure raises (`requests.ConnectionError`: an outage)."""
    endpoint = getattr(w3.provider, "endpoint_uri", None)
    if not endpoint:
        return [_one_by_one(w3, method, params) for method, params in calls]
    kwargs: dict[str, Any] = {"timeout": 30.0}
    get_kwargs = getattr(w3.provider, "get_request_kwargs", None)
    if get_kwargs is not None:
        kwargs.update({k: v for k, v in dict(get_kwargs()).items() if k == "timeout"})
    out: list[Any] = []
    for start in range(0, len(calls), RPC_BATCH_MAX):
        chunk = calls[start:start + RPC_BATCH_MAX]
        payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                   for i, (m, p) in enumerate(chunk)]
        response = _session().post(str(endpoint), json=payload, **kwargs)
        response.raise_for_status()
        body = response.json()
        if not isinstance(body, list):  # the node refused the batch as a whole
            raise ChainError(f"JSON-RPC batch refused: {str(body)[:300]}")
        by_id = {item.get("id"): item for item in body}
        for i, (method, _) in enumerate(chunk):
            item = by_id.get(i)
            if item is None:
                out.append(RpcError(method, {"message": "no answer in the batch"}))
            elif item.get("error") is not None:
                out.append(RpcError(method, item["error"]))
            else:
                out.append(item.get("result"))
    return out


def _session() -> requests.Session:
    session: requests.Session | None = getattr(_sessions, "session", None)
    if session is None:
        session = _sessions.session = requests.Session()
    return session


def _one_by_one(w3: Web3, method: str, params: list[Any]) -> Any:
    response = w3.provider.make_request(method, params)  # type: ignore[arg-type]
    if response.get("error") is not None:
        return RpcError(method, dict(response["error"]))
    return response.get("result")


def read_jobs(contract: Contract, job_ids: Sequence[int]) -> dict[int, OnChainJob]:
    """`getJob` for many jobs in one JSON-RPC batch (`eth_call` each, at the latest block). A
    job whose call failed is left out (its caller reads it on its own, in its own boundary)."""
    if not job_ids:
        return {}
    prefix = str(contract.functions.getJob(0)._encode_transaction_data())[:10]  # the selector
    address = str(contract.address)
    calls = [("eth_call", [{"to": address, "data": prefix + f"{job_id:064x}"}, "latest"])
             for job_id in job_ids]
    jobs: dict[int, OnChainJob] = {}
    for job_id, result in zip(job_ids, rpc_batch(contract.w3, calls), strict=True):
        if isinstance(result, RpcError):
            continue
        data = bytes.fromhex(str(result).removeprefix("0x"))
        if len(data) != 5 * 32:
            continue
        # a static tuple of five words: read them in place (eth_abi costs ~10× more per job)
        word = [data[i * 32:(i + 1) * 32] for i in range(5)]
        jobs[job_id] = OnChainJob(status=JobStatus(int.from_bytes(word[0], "big")),
                                  lease_end=int.from_bytes(word[1], "big"),
                                  claimer="0x" + word[2][12:].hex(), digest=word[3][:20],
                                  settle_pending=bool(int.from_bytes(word[4], "big")))
    return jobs


def read_replicas(contract: Contract, job_id: int, replicas: int) -> list[ReplicaSlot]:
    """Every slot of replicated job `job_id` (`getReplica`, one call per slot)."""
    slots = []
    for slot in range(replicas):
        raw = contract.functions.getReplica(job_id, slot).call()
        slots.append(ReplicaSlot(operator=str(raw[0]), lease_end=int(raw[1]),
                                 state=ReplicaState(raw[2]), commitment=bytes(raw[3]),
                                 answer=bytes(raw[4])))
    return slots


@dataclass(frozen=True)
class OperatorView:
    """`IJobManager.OperatorView`: `index` 0 = never registered; `exit_at` 0 = active."""

    index: int
    exit_at: int
    stake: int
    earned: int


def read_operator(contract: Contract, account: str) -> OperatorView:
    raw = contract.functions.getOperator(Web3.to_checksum_address(account)).call()
    return OperatorView(index=int(raw[0]), exit_at=int(raw[1]), stake=int(raw[2]),
                        earned=int(raw[3]))


class TxSender:
    """Signs and sends transactions from one key, owning its nonce (one sender per key per process).

    EIP-1559 fees: `maxFee = 2 × baseFee + tip`, capped at `max_fee_gwei`.
    """

    def __init__(self, w3: Web3, private_key: str, max_fee_gwei: float = 500.0,
                 priority_fee_gwei: float = 1.0, receipt_timeout_s: float = 120.0) -> None:
        self.w3 = w3
        self.account: LocalAccount = Account.from_key(private_key)
        self._max_fee = int(max_fee_gwei * GWEI)
        self._tip = int(priority_fee_gwei * GWEI)
        self._receipt_timeout = receipt_timeout_s
        self._lock = threading.Lock()
        self._nonce: int | None = None

    @property
    def address(self) -> str:
        return str(self.account.address)

    def _fees(self) -> dict[str, int]:
        base_fee = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0))
        max_fee, tip = eip1559_fees(base_fee, self._tip, self._max_fee)
        return {"maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip}

    def send(self, tx: TxParams, wait: bool = True) -> TxReceipt | str:
        """Fill nonce, fees and gas, sign, send; wait for the receipt unless `wait` is False."""
        with self._lock:
            if self._nonce is None:
                self._nonce = self.w3.eth.get_transaction_count(self.account.address, "pending")
            tx = dict(tx)  # type: ignore[assignment]
            tx.setdefault("from", self.account.address)
            tx.setdefault("chainId", self.w3.eth.chain_id)
            tx.update(self._fees())  # type: ignore[typeddict-item]
            tx["nonce"] = Nonce(self._nonce)
            if "gas" not in tx:
                estimate = self.w3.eth.estimate_gas(tx)
                tx["gas"] = estimate + estimate // 5 + 20_000
            signed = self.account.sign_transaction(tx)  # type: ignore[arg-type]
            try:
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            except Exception:
                self._nonce = None  # re-read from the node next time
                raise
            self._nonce += 1
        if not wait:
            return tx_hash.to_0x_hex()
        return self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self._receipt_timeout)

    def transact(self, call: Any, value: int = 0) -> TxReceipt:
        """Send a contract function call (`contract.functions.f(...)`) and wait for its receipt."""
        tx = call.build_transaction({"from": self.account.address, "value": value, "gas": 1})
        tx.pop("gas")
        for key in ("maxFeePerGas", "maxPriorityFeePerGas", "nonce"):
            tx.pop(key, None)
        receipt = self.send(tx)
        assert not isinstance(receipt, str)
        if receipt["status"] != 1:
            raise ChainError(f"transaction {receipt['transactionHash'].to_0x_hex()} reverted")
        return receipt

    def deploy(self, name: str, *args: Any) -> str:
        artifact = load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        receipt = self.transact(factory.constructor(*args))
        return str(receipt["contractAddress"])
