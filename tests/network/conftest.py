"""The operator network, for real: independent operator stacks on one anvil.

The first stack starts anvil and deploys the JobManager; each other stack *joins* that chain
(`DevStack(rpc_url=…, contract=…)`). Every stack is a whole operator of its own: its own key
(registered and staked), Redis, Kubo, ledger (SQLite in its state directory), worker (its own node
id, node key and work directory) and bridge, on free ports. The requester (dev key 0, the
deployer) calls the contract directly with web3, so these tests depend on no request client.
Everything started is stopped at the end of the module, also when a test fails.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
from eth_account import Account
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD

from bridge.chain import ZERO_ADDRESS, JobStatus, TxSender, connect, job_manager, read_job
from bridge.terms import Terms
from devstack.images import BUSYBOX_IMAGE
from devstack.stack import DevStack, dev_key

OWNER_KEY_INDEX = 0  # deploys the JobManager and requests the jobs
OPERATOR_KEY_INDICES = (4, 5, 6)  # one per operator stack (1-3 are other test packages')
ROGUE_KEY_INDEX = 7  # tests/network/rogue.py: a dishonest operator driving the contract itself
COPIER_KEY_INDEX = 8  # a rogue that copies others' commitments and reveals
JOBS_LEASE_S = 60  # MIN_LEASE: the shortest lease a request may ask for


def spec(text: str, sleep_s: float = 0, result: bool = False) -> str:
    """A job that writes `text` to /outputs/out (so its result CID is its own), optionally
    sleeping first; with `result`, that file is also the on-chain small result."""
    script = f"sleep {sleep_s}; " if sleep_s else ""
    script += f"echo {text} > /outputs/out"
    body = (f'{{"image":"{BUSYBOX_IMAGE}","entrypoint":["sh","-c","{script}"],"cache":false'
            + (',"result":"/outputs/out"' if result else "") + "}")
    return body


@dataclass
class Operator:
    """One operator's whole stack."""

    stack: DevStack
    node_id: str
    killed: bool = False

    @property
    def address(self) -> str:
        return str(Account.from_key(self.stack.oracle_key).address)

    def kill(self) -> None:
        """kill -9 the bridge's and the worker's process groups (their pool children too)."""
        self.stack.stop_process("bridge", kill=True)
        self.stack.kill_worker(self.node_id)
        self.killed = True

    def ledger_attempts(self, chain_id: int, contract: str, job_id: int) -> list[Any]:
        from bridge.ledger import Ledger

        ledger = Ledger(f"sqlite:///{self.stack.state_dir / 'ledger.sqlite'}", migrate=False)
        return list(ledger.attempts(chain_id, contract, job_id))


@dataclass
class Network:
    operators: list[Operator]
    w3: Web3
    manager: Contract
    owner: TxSender  # the requester
    chain_id: int = 0
    _events: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return str(self.manager.address)

    # -- requests --------------------------------------------------------------------------------
    def request(self, text: str, replicas: int = 1, lease: int = JOBS_LEASE_S,
                claimers: Sequence[str] = (), consumer: str = ZERO_ADDRESS, gas: int = 0,
                sender: TxSender | None = None) -> tuple[int, Terms]:
        """`requestJobWith(spec, consumer, gas, (replicas, lease, claimers))`, paying
        `quoteFee(consumer, gas, replicas)`; returns the job id and its terms (from the event)."""
        sender = sender or self.owner
        fee = int(self.manager.functions.quoteFee(consumer, gas, replicas).call())
        receipt = sender.transact(
            self.manager.functions.requestJobWith(
                text, consumer, gas,
                (replicas, lease, [Web3.to_checksum_address(c) for c in claimers])),
            value=fee)
        event = self.manager.events.JobRequested().process_receipt(receipt, errors=DISCARD)[0]
        return int(event["args"]["jobId"]), Terms.from_event(dict(event["args"]["terms"]))

    def terms_of(self, job_id: int) -> Terms:
        event = self.events("JobRequested", jobId=job_id)[0]
        return Terms.from_event(dict(event["args"]["terms"]))

    # -- the chain's record ----------------------------------------------------------------------
    def events(self, name: str, **filters: Any) -> list[Any]:
        event = getattr(self.manager.events, name)
        return list(event().get_logs(from_block=0, argument_filters=filters or None))

    def status(self, job_id: int) -> JobStatus:
        return read_job(self.manager, job_id).status

    def stake(self, account: str) -> int:
        return int(self.manager.functions.getOperator(Web3.to_checksum_address(account))
                   .call()[2])

    def withdrawable(self, account: str) -> int:
        return int(self.manager.functions.withdrawable(Web3.to_checksum_address(account)).call())

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float,
                   interval: float = 0.5) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            self.assert_alive()
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n"
                             + self.log_tails())

    def wait_settled(self, job_ids: Sequence[int], timeout: float) -> None:
        self.wait_until(f"jobs {list(job_ids)} to settle",
                        lambda: all(not self.status(j).open for j in job_ids), timeout)

    def assert_alive(self, skip: Sequence[Operator] = ()) -> None:
        for operator in self.operators:
            if operator in skip or operator.killed:
                continue
            dead = operator.stack.check_alive()
            assert not dead, f"{operator.node_id}: {dead} exited\n" + self.log_tails()

    def log_tails(self, chars: int = 1500) -> str:
        out = []
        for operator in self.operators:
            log = operator.stack.logs / "bridge.log"
            if log.exists():
                out.append(f"--- {operator.node_id} bridge.log\n{log.read_text()[-chars:]}")
        return "\n".join(out)

    def mine_to(self, timestamp: int) -> None:
        """Move the chain's clock to `timestamp` (anvil: the next block gets it)."""
        self.w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def _start_operators(base: Path, count: int, worker_env: dict[str, str] | None = None
                     ) -> Iterator[Network]:
    operators: list[Operator] = []
    try:
        for i, key_index in enumerate(OPERATOR_KEY_INDICES[:count]):
            node_id = f"net-op{key_index}"
            first = operators[0].stack if operators else None
            stack = DevStack(
                base / f"op{key_index}", block_time=1, preferred_ports=False,
                with_worker=False, nodes=(node_id,), oracle_key=dev_key(key_index),
                rpc_url=first.env["COD_RPC_URL"] if first else None,
                contract=first.env["COD_CONTRACT"] if first else None,
                worker_env={"COD_INPUT_FETCH_TIMEOUT_S": "10", **(worker_env or {})})
            operators.append(Operator(stack, node_id))
            stack.start()
            stack.start_worker(node_id, concurrency=2)
            assert i == 0 or stack.env["COD_CONTRACT"] == operators[0].stack.env["COD_CONTRACT"]
        first = operators[0].stack
        w3 = connect(first.env["COD_RPC_URL"])
        network = Network(operators, w3, job_manager(w3, first.env["COD_CONTRACT"]),
                          TxSender(w3, dev_key(OWNER_KEY_INDEX)), chain_id=int(w3.eth.chain_id))
        yield network
    finally:
        for operator in reversed(operators):  # the first stack (anvil) last
            with contextlib.suppress(Exception):
                operator.stack.stop()
        _remove_containers([o.node_id for o in operators])


def _remove_containers(node_ids: Sequence[str]) -> None:
    """Containers a killed worker left behind (labelled with its node id, unique to this run)."""
    with contextlib.suppress(Exception):
        client = docker.from_env(timeout=10)
        for node_id in node_ids:
            for container in client.containers.list(all=True,
                                                    filters={"label": f"cod.node={node_id}"}):
                with contextlib.suppress(Exception):
                    container.remove(force=True, v=True)


@pytest.fixture(scope="module")
def three_operators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    yield from _start_operators(Path(tmp_path_factory.mktemp("network")), 3)


@pytest.fixture(scope="module")
def two_operators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    yield from _start_operators(Path(tmp_path_factory.mktemp("network")), 2)
