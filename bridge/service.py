"""The bridge process: listen → reconcile → dispatch (claim first) → collect → submit → confirm, in
one loop.

One loop in one process keeps a single owner for the oracle key's nonces. Each step reads its work
from the ledger, so the loop can stop (or be killed) anywhere and resume where it was. The loop
runs when there is something to do (a new head, a pushed result: `bridge.wake`), and at least
every `poll_interval_s`.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

from bridge import metrics
from bridge.chain import connect, job_manager
from bridge.claims import Claims
from bridge.config import BridgeSettings
from bridge.dispatcher import BrokerEpoch, Dispatcher
from bridge.ledger import Job, Ledger
from bridge.listener import Listener
from bridge.ports import CeleryTaskQueue, ContractChain, RedisNodeBoard
from bridge.reconciler import Reconciler
from bridge.replication import Replication
from bridge.submitter import Submitter
from bridge.txmanager import TxManager
from bridge.wake import HeadWatcher, ResultWatcher, Wakeup
from protocol.attestation import parse_addresses
from protocol.messaging import make_app

log = logging.getLogger(__name__)
GAUGE_INTERVAL_S = 5.0  # ledger-wide counts for the metrics: not on every pass of the loop


class Bridge:
    def __init__(self, settings: BridgeSettings) -> None:
        self.settings = settings
        w3 = connect(settings.rpc_url)
        contract = job_manager(w3, settings.require_contract())
        self.ledger = Ledger(settings.ledger_url)
        self.listener = Listener(w3, contract, self.ledger, settings.confirmations,
                                 settings.start_block, settings.log_chunk_blocks,
                                 on_reorged=self._reorged)
        chain_id = self.listener.chain_id
        self.address = str(contract.address)
        app = make_app(settings.broker_url)
        epoch = BrokerEpoch(settings.broker_url)
        tasks = CeleryTaskQueue(app)
        on_chain = ContractChain(contract)
        # one key, one nonce owner: it claims, fulfils and fails (the operator's key)
        self.txm = TxManager(w3, settings.require_oracle_key(), self.ledger,
                             max_fee_gwei=settings.max_fee_gwei,
                             priority_fee_gwei=settings.priority_fee_gwei,
                             bump_after_blocks=settings.bump_after_blocks,
                             receipt_depth=settings.receipt_depth)
        self.claims = Claims(on_chain, self.txm, self.ledger, chain_id, self.txm.address,
                             grace_s=settings.claim_grace_s)
        self.dispatcher = Dispatcher(tasks, RedisNodeBoard(str(app.conf.broker_url)), self.ledger,
                                     epoch, chain_id, self.address,
                                     locality=settings.locality,
                                     max_attempts=settings.max_attempts,
                                     trusted_nodes=parse_addresses(settings.node_addresses),
                                     claims=self.claims)
        self.replication = Replication(on_chain, self.txm, self.ledger, chain_id,
                                       self.txm.address)
        self.submitter = Submitter(on_chain, self.txm, self.ledger, chain_id, self.claims,
                                   self.replication)
        self.reconciler = Reconciler(tasks, self.ledger, self.dispatcher, epoch, on_chain, chain_id,
                                     stall_grace_s=settings.stall_grace_s,
                                     max_attempts=settings.max_attempts,
                                     interval_s=settings.reconcile_interval_s,
                                     locality_wait_s=settings.locality_wait_s,
                                     operator=self.txm.address)
        self.claims.standing()  # logs at start why the key cannot claim, if it cannot
        self.chain_id = chain_id
        self._stop = threading.Event()
        self.wake = Wakeup()
        self._watchers = [HeadWatcher(self.wake, settings.rpc_url, settings.ws_url,
                                      settings.head_poll_s),
                          ResultWatcher(self.wake, str(app.conf.result_backend))]
        self._gauges_at = 0.0
        log.info("bridge for %s on chain %d, operator %s, %d confirmation(s)", self.address,
                 chain_id, self.txm.address, settings.confirmations)

    def step(self) -> None:
        """One pass of every step. Each runs on its own: a step that fails (an outage: each job
        is already isolated inside its step) does not keep the others from running; the first
        failure is raised once all have run, so the loop backs off."""
        failed: Exception | None = None
        for name, run in (("listen", self.listener.poll), ("reconcile", self.reconciler.maybe_run),
                          ("dispatch", self.dispatcher.dispatch_pending),
                          ("collect", self._collect),
                          ("submit", self.submitter.submit_ready), ("send", self.txm.process),
                          ("confirm", self.submitter.confirm),
                          ("replicate", self.replication.advance),
                          # last: a claim mined in this pass is dispatched at the next one
                          ("claimed", self._claimed)):
            try:
                run()
            except Exception as exc:
                metrics.STEP_ERRORS.labels(name).inc()
                log.warning("bridge step %s failed (%s: %s)", name, type(exc).__name__,
                            str(exc)[:300])
                failed = failed or exc
        if time.monotonic() - self._gauges_at >= GAUGE_INTERVAL_S:
            self._gauges()
            self._gauges_at = time.monotonic()
        if failed is not None:
            raise failed

    def _collect(self) -> None:
        self.dispatcher.collect(self.wake.changed_tasks())

    def _claimed(self) -> None:
        if self.claims.confirm():  # claims confirmed: dispatch them now, not at the next head
            self.wake.poke()

    def _gauges(self) -> None:
        for state, count in self.ledger.count_by_state(self.chain_id, self.address).items():
            metrics.JOBS_BY_STATE.labels(state).set(count)
        metrics.PENDING_TXS.set(self.txm.pending_count())

    def _reorged(self, jobs: list[Job]) -> None:
        log.critical("%d job(s) requested in reorged blocks: %s", len(jobs),
                     ", ".join(str(j.job_id) for j in jobs))

    def run_forever(self) -> None:
        def stop(_signum: int, _frame: FrameType | None) -> None:
            self.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if self.settings.metrics_port:
            metrics.serve(self.settings.metrics_port)
        for watcher in self._watchers:
            watcher.start()
        backoff = self.settings.poll_interval_s
        try:
            while not self._stop.is_set():
                try:
                    self.step()
                    backoff = self.settings.poll_interval_s
                    self.wake.wait(backoff)  # the next head or result, or the interval
                except Exception as exc:  # an outage (RPC, Redis) must not end the bridge
                    log.warning("bridge step failed (%s: %s); retrying in %.1f s",
                                type(exc).__name__, str(exc)[:300], backoff)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 15.0)
        finally:
            for watcher in self._watchers:
                watcher.stop()
        log.info("bridge stopped")

    def stop(self) -> None:
        self._stop.set()
        self.wake.poke()
