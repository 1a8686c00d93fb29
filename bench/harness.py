"""Instruments of the end-to-end benchmarks: when each block appeared, when each container started
and died, a requester that sends requestJob without waiting, and reads of the bridge's ledger."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
from eth_account import Account
from sqlalchemy import func, select
from web3 import Web3
from web3.contract import Contract

from bridge.chain import connect, job_manager
from bridge.ledger import Job, JobEvent, JobState, Ledger
from bridge.timeline import EventKind
from bridge.txmanager import calldata
from devstack.stack import DevStack, dev_key
from protocol.spec import JobSpec

ZERO = "0x" + "0" * 40
BENCH_KEY_INDEX = 2  # an anvil dev account of its own: no nonce shared with the stack's users


def container_name(node: str, job_key: str, attempt: str = "0") -> str:
    """The container name the runner gives a job (`executor.runner`)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"cod-{node}-{job_key}-{attempt}")[:200]


class BlockWatcher:
    """Polls the head every `period` s and keeps when each block number was first seen."""

    def __init__(self, w3: Web3, period: float = 0.02) -> None:
        self._w3 = w3
        self._period = period
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._last = int(w3.eth.block_number)
        threading.Thread(target=self._loop, daemon=True, name="block-watcher").start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                head = int(self._w3.eth.block_number)
            except Exception:  # a busy node: try again
                time.sleep(self._period)
                continue
            now = time.time()
            for number in range(self._last + 1, head + 1):
                self.seen.setdefault(number, now)
            self._last = max(self._last, head)
            time.sleep(self._period)

    def wait(self, number: int, timeout: float = 5.0) -> float | None:
        """When block `number` was first seen, waiting up to `timeout` s for it."""
        deadline = time.monotonic() + timeout
        while number not in self.seen and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.seen.get(number)

    def stop(self) -> None:
        self._stop.set()


class ContainerEvents:
    """Docker's own start/die times of containers carrying a `cod.node` label (any value)."""

    def __init__(self, label: str = "cod.node") -> None:
        self.times: dict[tuple[str, str], float] = {}
        self._stream = docker.from_env().events(decode=True, filters={"label": label})
        threading.Thread(target=self._read, daemon=True, name="docker-events").start()

    def _read(self) -> None:
        for event in self._stream:
            if event.get("Type") == "container" and event.get("status") in ("start", "die"):
                name = event["Actor"]["Attributes"]["name"]
                self.times[(name, event["status"])] = event["timeNano"] / 1e9

    def get(self, name: str, status: str) -> float | None:
        return self.times.get((name, status))

    def wait(self, name: str, status: str, timeout: float = 3.0) -> float | None:
        """The time of a container's event, waiting a little for the event stream."""
        deadline = time.monotonic() + timeout
        while (name, status) not in self.times and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.times.get((name, status))


class Requester:
    """Sends `requestJob` transactions from the bench's own key, owning its nonce, without
    waiting for receipts (so a backlog can be built at any rate)."""

    def __init__(self, stack: DevStack) -> None:
        self.w3 = connect(stack.env["COD_RPC_URL"], timeout=60)
        self.manager: Contract = job_manager(self.w3, stack.env["COD_CONTRACT"])
        self.account = Account.from_key(dev_key(BENCH_KEY_INDEX))
        self.nonce = int(self.w3.eth.get_transaction_count(self.account.address, "pending"))
        self.fee = int(self.manager.functions.minFee().call())
        self.chain_id = int(self.w3.eth.chain_id)

    def send(self, spec: JobSpec) -> str:
        """Send one request; returns its transaction hash."""
        data = calldata(self.manager.functions.requestJob(spec.to_json(), ZERO, 0))
        base = int(self.w3.eth.get_block("latest")["baseFeePerGas"])
        tx = {"to": self.manager.address, "data": data, "value": self.fee, "gas": 400_000,
              "maxFeePerGas": 4 * base + 10**9, "maxPriorityFeePerGas": 10**9,
              "nonce": self.nonce, "chainId": self.chain_id, "type": 2}
        tx_hash = self.w3.eth.send_raw_transaction(
            self.account.sign_transaction(tx).raw_transaction)
        self.nonce += 1
        return str(tx_hash.to_0x_hex())

    def block_of(self, tx_hash: str) -> int:
        return int(self.w3.eth.get_transaction_receipt(tx_hash)["blockNumber"])  # type: ignore[arg-type]


@dataclass
class LedgerReader:
    url: str
    chain_id: int
    contract: str
    ledger: Ledger = field(init=False)

    def __post_init__(self) -> None:
        self.ledger = Ledger(self.url, migrate=False)
        self.contract = self.contract.lower()

    def job_by_tx(self, tx_hash: str) -> Job | None:
        with self.ledger.session() as s:
            return s.scalars(select(Job).where(Job.tx_hash == tx_hash)).first()

    def wait_state(self, tx_hash: str, states: tuple[str, ...] = (JobState.COMPLETED,
                                                                    JobState.FAILED),
                   timeout: float = 300) -> Job:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job_by_tx(tx_hash)
            if job is not None and job.state in states:
                return job
            time.sleep(0.1)
        raise TimeoutError(f"request {tx_hash} not {'/'.join(states)} after {timeout:.0f} s")

    def timeline(self, job: Job) -> list[tuple[str, float]]:
        return [(e.kind, e.at) for e in self.ledger.timeline(job.chain_id, job.contract,
                                                             job.job_id)]

    def event_times(self, kind: EventKind, since: float) -> list[float]:
        with self.ledger.session() as s:
            return list(s.scalars(select(JobEvent.at).where(
                JobEvent.kind == kind, JobEvent.at >= since)))

    def count_done(self) -> int:
        with self.ledger.session() as s:
            return int(s.scalar(select(func.count()).select_from(Job).where(
                Job.state.in_([JobState.COMPLETED, JobState.FAILED, JobState.CLOSED]))) or 0)

    def count_all(self) -> int:
        with self.ledger.session() as s:
            return int(s.scalar(select(func.count()).select_from(Job)) or 0)

    def attempt_duration(self, job: Job) -> float | None:
        attempts = self.ledger.attempts(job.chain_id, job.contract, job.job_id)
        return attempts[-1].duration_s if attempts else None


def docker_run(image: str, script: str, name: str | None = None,
               extra: list[str] | None = None) -> float:
    """`docker run --rm --network none IMAGE sh -c SCRIPT`; returns its wall time."""
    args = ["docker", "run", "--rm", "--network", "none", *(extra or [])]
    if name:
        args += ["--name", name]
    start = time.time()
    subprocess.run([*args, image, "sh", "-c", script], check=True, capture_output=True)
    return time.time() - start


def proc_memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's memory figure (MB) from /proc: `VmRSS` (now) or `VmHWM` (peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0
