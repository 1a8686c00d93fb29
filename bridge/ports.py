"""What the dispatcher, reconciler and submitter need from the world, and the real providers.

Each step takes its collaborators as constructor arguments, typed by the small protocols here, so
a unit test can hand it fakes; `bridge.service.Bridge` builds the real ones (Celery, the broker's
Redis, web3) from the settings and passes them in.

- `TaskQueue`: send a task to a queue (or many, over one connection: `sending`), read a task's
  state and result, forget or revoke it.
- `NodeBoard`: the live nodes, what they hold, and the marks on tasks sent elsewhere.
- `Epoch`: the broker's epoch (`bridge.dispatcher.BrokerEpoch`).
- `ChainReader`: the contract's address, the latest block's timestamp, a job as the chain has it.
- `SettlementChain`: a `ChainReader` that also reads replica slots and lapses, and encodes
  `claimJob`, `fulfillJob`/`failJob`, `fulfillBatch`, and the replicated `commitResult`,
  `revealResult` and `finalize` calls (v2: each quoting the request's `Terms`).
- `TxQueue`: records transactions to send and reads them back (`bridge.txmanager.TxManager`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

import kombu.exceptions
from celery import Celery
from celery.result import AsyncResult
from web3.contract import Contract

from bridge.chain import OnChainJob, ReplicaSlot, read_job, read_jobs, read_replicas
from bridge.ledger import Transaction
from bridge.operators import OperatorStatus
from bridge.operators import status as operator_status
from bridge.terms import Terms
from bridge.txmanager import calldata
from protocol.messaging import EXECUTE_JOB
from protocol.nodes import DataIndex, NodeInfo, NodeRegistry, Supersession


class TaskResult(Protocol):
    """A task's entry in the result backend (a Celery `AsyncResult`)."""

    @property
    def state(self) -> str: ...

    @property
    def result(self) -> Any: ...

    @property
    def info(self) -> Any: ...

    def forget(self) -> None: ...


class TaskSender(Protocol):
    def send(self, task_id: str, queue: str, job_key: str, spec: str) -> None:
        """Queue the job-execution task for `job_key` running `spec` under `task_id`."""


class TaskQueue(TaskSender, Protocol):
    def sending(self) -> AbstractContextManager[TaskSender]:
        """A sender for many tasks in a row over one broker connection (a dispatch batch)."""

    def result(self, task_id: str) -> TaskResult: ...

    def revoke(self, task_id: str) -> None: ...


class NodeBoard(Protocol):
    def live(self) -> list[NodeInfo]:
        """Every node whose heartbeat has not expired."""

    def holdings(self, node_ids: list[str]) -> dict[str, dict[str, int]]:
        """CID → size pinned on each of `node_ids` (nodes with none left out)."""

    def mark_superseded(self, task_id: str) -> None:
        """The task was sent elsewhere: a node that still receives it skips it."""


class Epoch(Protocol):
    def current(self) -> str: ...


class ChainReader(Protocol):
    @property
    def address(self) -> str:
        """The JobManager contract's address."""

    def latest_timestamp(self) -> int: ...

    def read_job(self, job_id: int) -> OnChainJob: ...


Fulfilment = tuple[int, Terms, str, int, bytes]
"""One `fulfillBatch` item: job id, terms, result CID, exit code, small result."""


class SettlementChain(ChainReader, Protocol):
    def read_jobs(self, job_ids: list[int]) -> dict[int, OnChainJob]:
        """Many jobs as the chain has them, in one round trip."""

    def may_claim(self, job_id: int, account: str) -> bool:
        """`account` is named by restricted request `job_id`."""

    def claim_calldata(self, job_id: int, terms: Terms) -> str: ...

    def fulfill_calldata(self, job_id: int, terms: Terms, result_cid: str, exit_code: int,
                         result: bytes) -> str: ...

    def fulfill_batch_calldata(self, items: list[Fulfilment]) -> str: ...

    def fail_calldata(self, job_id: int, terms: Terms, reason: str) -> str: ...

    def read_replicas(self, job_id: int, replicas: int) -> list[ReplicaSlot]:
        """Every replica slot of a replicated job."""

    def has_lapsed(self, job_id: int, account: str) -> bool:
        """`account` let a lease on `job_id` lapse (it may not claim the job again)."""

    def commit_calldata(self, job_id: int, terms: Terms, commitment: bytes) -> str: ...

    def reveal_calldata(self, job_id: int, terms: Terms, result_cid: str, exit_code: int,
                        result: bytes, salt: bytes) -> str: ...

    def finalize_calldata(self, job_id: int, terms: Terms) -> str: ...

    def operator_standing(self, account: str) -> OperatorStatus:
        """`account`'s operator record and the contract's bond terms."""


class TxQueue(Protocol):
    def enqueue(self, idempotency_key: str, to: str, data: str, value: int = 0,
                max_cost: int | None = None) -> Transaction: ...

    def get(self, tx_id: int) -> Transaction | None: ...

    def get_many(self, tx_ids: list[int]) -> dict[int, Transaction]: ...


# -- the real providers --------------------------------------------------------------------------

BATCH_MAX_COMMANDS = 10_000  # broker commands buffered before a flush: a dispatch batch (500) is one


class CeleryTaskQueue:
    """Tasks through a Celery app (the broker and result backend in Redis)."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def send(self, task_id: str, queue: str, job_key: str, spec: str) -> None:
        self.app.send_task(EXECUTE_JOB, args=[job_key, spec], task_id=task_id, queue=queue)

    @contextmanager
    def sending(self) -> Iterator[TaskSender]:
        """One producer (and its connection) from the app's pool for the whole batch, publishing
        through kombu's batch (Redis: one pipelined round trip at the end, instead of a pooled
        connection and a round trip per task). The tasks go out when the block ends; one that
        ends with an error sends none it had not flushed. A failed flush (delivery uncertain)
        is raised as an outage: nothing is recorded as sent, and the jobs are sent again under
        the same task ids."""
        with self.app.producer_or_acquire() as producer:
            try:
                with producer.batch(max_size=BATCH_MAX_COMMANDS):
                    yield _ProducerSender(self.app, producer)
            except kombu.exceptions.BatchPublishError as exc:
                raise kombu.exceptions.OperationalError(
                    f"sending a batch of tasks failed: {exc}") from exc

    def result(self, task_id: str) -> TaskResult:
        result: TaskResult = AsyncResult(task_id, app=self.app)
        return result

    def revoke(self, task_id: str) -> None:
        self.app.control.revoke(task_id)


class _ProducerSender:
    """Sends each task with the producer `CeleryTaskQueue.sending` holds: the message
    `send_task` would send (tests/bridge/test_dispatch_batch_unit.py compares them), built and
    published with the app's own `amqp` calls. Not `send_task` itself: with the Redis result
    backend it also subscribes to every task's result channel and unsubscribes when its
    `AsyncResult` is dropped, two more round trips per task that the bridge never reads from
    (results are read by key; `bridge.wake` listens on one pattern)."""

    def __init__(self, app: Celery, producer: Any) -> None:
        self._app = app
        self._producer = producer
        self._declared: set[str] = set()  # queues declared in this batch (kombu caches it too)

    def send(self, task_id: str, queue: str, job_key: str, spec: str) -> None:
        amqp = self._app.amqp
        message = amqp.create_task_message(
            task_id, EXECUTE_JOB, [job_key, spec], {}, reply_to=self._app.thread_oid,
            create_sent_event=self._app.conf.task_send_sent_event, ignore_result=None)
        # a queue is declared with its first task of the batch, as `send_task` would (kombu's
        # cache answers the rest, at the cost of copying and binding the queue per task)
        declare: list[Any] | None = None if queue not in self._declared else []
        amqp.send_task_message(self._producer, EXECUTE_JOB, message, queue=queue,
                               declare=declare)
        self._declared.add(queue)


class RedisNodeBoard:
    """The heartbeats, holdings and supersession marks the workers and bridge keep in Redis."""

    def __init__(self, redis_url: str) -> None:
        self._nodes = NodeRegistry(redis_url)
        self._data = DataIndex(redis_url)
        self._supersession = Supersession(redis_url)

    def live(self) -> list[NodeInfo]:
        return self._nodes.live()

    def holdings(self, node_ids: list[str]) -> dict[str, dict[str, int]]:
        return self._data.holdings(node_ids)

    def mark_superseded(self, task_id: str) -> None:
        self._supersession.mark(task_id)


class ContractChain:
    """The JobManager contract over web3."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract

    @property
    def address(self) -> str:
        return str(self.contract.address)

    def latest_timestamp(self) -> int:
        return int(self.contract.w3.eth.get_block("latest")["timestamp"])

    def read_job(self, job_id: int) -> OnChainJob:
        return read_job(self.contract, job_id)

    def read_jobs(self, job_ids: list[int]) -> dict[int, OnChainJob]:
        return read_jobs(self.contract, job_ids)

    def may_claim(self, job_id: int, account: str) -> bool:
        return bool(self.contract.functions.mayClaim(job_id, account).call())

    def claim_calldata(self, job_id: int, terms: Terms) -> str:
        return calldata(self.contract.functions.claimJob(job_id, terms.as_tuple()))

    def fulfill_calldata(self, job_id: int, terms: Terms, result_cid: str, exit_code: int,
                         result: bytes) -> str:
        return calldata(self.contract.functions.fulfillJob(job_id, terms.as_tuple(), result_cid,
                                                           exit_code, result))

    def fulfill_batch_calldata(self, items: list[Fulfilment]) -> str:
        return calldata(self.contract.functions.fulfillBatch(
            [(job_id, terms.as_tuple(), cid, code, result)
             for job_id, terms, cid, code, result in items]))

    def fail_calldata(self, job_id: int, terms: Terms, reason: str) -> str:
        return calldata(self.contract.functions.failJob(job_id, terms.as_tuple(), reason))

    def read_replicas(self, job_id: int, replicas: int) -> list[ReplicaSlot]:
        return read_replicas(self.contract, job_id, replicas)

    def has_lapsed(self, job_id: int, account: str) -> bool:
        return bool(self.contract.functions.hasLapsed(job_id, account).call())

    def commit_calldata(self, job_id: int, terms: Terms, commitment: bytes) -> str:
        return calldata(self.contract.functions.commitResult(job_id, terms.as_tuple(),
                                                             commitment))

    def reveal_calldata(self, job_id: int, terms: Terms, result_cid: str, exit_code: int,
                        result: bytes, salt: bytes) -> str:
        return calldata(self.contract.functions.revealResult(job_id, terms.as_tuple(),
                                                             result_cid, exit_code, result, salt))

    def finalize_calldata(self, job_id: int, terms: Terms) -> str:
        return calldata(self.contract.functions.finalize(job_id, terms.as_tuple()))

    def operator_standing(self, account: str) -> OperatorStatus:
        return operator_status(self.contract, account)
