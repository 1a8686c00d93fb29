"""The bridge process: listen → dispatch → collect → submit, in one loop.

One loop in one process keeps a single owner for the oracle key's nonces. Each step reads its work
from the ledger, so the loop can stop (or be killed) anywhere and resume where it was.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from bridge.chain import TxSender, connect, job_manager
from bridge.config import BridgeSettings
from bridge.dispatcher import Dispatcher
from bridge.ledger import Ledger
from bridge.listener import Listener
from bridge.submitter import Submitter
from executor.celery_app import make_app

log = logging.getLogger(__name__)


class Bridge:
    def __init__(self, settings: BridgeSettings) -> None:
        self.settings = settings
        w3 = connect(settings.rpc_url)
        contract = job_manager(w3, settings.require_contract())
        self.ledger = Ledger(settings.ledger_url)
        self.listener = Listener(w3, contract, self.ledger, settings.confirmations,
                                 settings.start_block, settings.log_chunk_blocks)
        chain_id = self.listener.chain_id
        self.dispatcher = Dispatcher(make_app(settings.broker_url), self.ledger, chain_id,
                                     str(contract.address))
        sender = TxSender(w3, settings.require_oracle_key(), settings.max_fee_gwei,
                          settings.priority_fee_gwei, settings.receipt_timeout_s)
        self.submitter = Submitter(contract, sender, self.ledger, chain_id)
        self._stop = threading.Event()
        log.info("bridge for %s on chain %d, oracle %s", contract.address, chain_id,
                 sender.address)

    def step(self) -> None:
        self.listener.poll()
        self.dispatcher.dispatch_pending()
        self.dispatcher.collect()
        self.submitter.submit_ready()

    def run_forever(self) -> None:
        def stop(_signum: int, _frame: FrameType | None) -> None:
            self._stop.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        backoff = self.settings.poll_interval_s
        while not self._stop.is_set():
            try:
                self.step()
                backoff = self.settings.poll_interval_s
            except Exception:  # an outage (RPC, Redis) must not end the bridge: back off, retry
                log.exception("bridge step failed; retrying in %.1f s", backoff)
                backoff = min(backoff * 2, 30.0)
            self._stop.wait(backoff)
        log.info("bridge stopped")

    def stop(self) -> None:
        self._stop.set()


