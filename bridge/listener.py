"""Reads `JobRequested` logs up to `head − confirmations` and records them in the ledger.

Each block range is recorded together with the checkpoint that moves past it (one transaction), so
a crash at any point neither loses an event nor records one twice.
"""

from __future__ import annotations

import logging

from web3 import Web3
from web3.contract import Contract

from bridge.ledger import Ledger, NewJob

log = logging.getLogger(__name__)


class Listener:
    def __init__(self, w3: Web3, contract: Contract, ledger: Ledger, confirmations: int,
                 start_block: int, chunk_blocks: int) -> None:
        self._w3 = w3
        self._contract = contract
        self._ledger = ledger
        self._confirmations = confirmations
        self._start_block = start_block
        self._chunk = chunk_blocks
        self.chain_id = w3.eth.chain_id
        self.address = str(contract.address)

    def poll(self) -> int:
        """Read every confirmed block past the checkpoint; returns the number of new jobs."""
        safe_head = self._w3.eth.block_number - self._confirmations
        checkpoint = self._ledger.checkpoint(self.chain_id, self.address)
        start = checkpoint.block_number + 1 if checkpoint else self._start_block
        new = 0
        while start <= safe_head:
            end = min(start + self._chunk - 1, safe_head)
            logs = self._contract.events.JobRequested.get_logs(from_block=start, to_block=end)
            jobs = [
                NewJob(
                    job_id=int(entry["args"]["jobId"]),
                    requester=str(entry["args"]["requester"]),
                    consumer=str(entry["args"]["consumer"]),
                    spec=str(entry["args"]["spec"]),
                    fee_wei=int(entry["args"]["fee"]),
                    deadline=int(entry["args"]["deadline"]),
                    block_number=int(entry["blockNumber"]),
                    tx_hash=Web3.to_hex(entry["transactionHash"]),
                )
                for entry in logs
            ]
            block_hash = Web3.to_hex(self._w3.eth.get_block(end)["hash"])
            added = self._ledger.record_block_range(self.chain_id, self.address, jobs, end,
                                                    block_hash)
            if added:
                log.info("blocks %d-%d: %d new job(s)", start, end, added)
            new += added
            start = end + 1
        return new
