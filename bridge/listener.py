"""Reads `JobRequested` logs up to `head − confirmations` and records them in the ledger.

- Each block range is recorded together with the checkpoint that moves past it (one transaction),
  so a crash at any point neither loses an event nor records one twice.
- Reorgs: before reading on, the checkpoint's block hash is compared with the chain's. If it
  changed, the listener walks back through the stored hashes to the newest block still canonical,
  rewinds there, marks the jobs requested above it `reorged` and reads again; requests that are
  still on the chain come back (a job keeps its state if its request's transaction is unchanged).
  With `confirmations` at least the chain's reorg depth this never happens; when it does, it is a
  critical alarm (log + metric), not a silent fix.
- `eth_getLogs` ranges start at `chunk_blocks` and halve when the RPC refuses a range.
- Logs are fetched raw — one `eth_getLogs` per range, straight through the provider, so web3 does
  not format thousands of logs it would only hand back — and decoded one by one (`bridge.events`):
  a request whose bytes do not decode is recorded and failed on-chain with the reason, and never
  stops the range. A range's jobs are written in bulk (`Ledger.record_block_range_bulk`).
- A range and its end block's hash are one consistent read: the hash is read before and after the
  logs, and the range is read again if a reorg moved it in between.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from web3 import Web3
from web3.contract import Contract
from web3.exceptions import Web3RPCError
from web3.types import RPCEndpoint

from bridge import metrics
from bridge.events import RequestDecoder, UndecodableRequest
from bridge.ledger import Job, Ledger, NewJob

log = logging.getLogger(__name__)
MIN_CHUNK = 1


class Listener:
    def __init__(self, w3: Web3, contract: Contract, ledger: Ledger, confirmations: int,
                 start_block: int, chunk_blocks: int,
                 on_reorged: Callable[[list[Job]], None] | None = None) -> None:
        self._w3 = w3
        self._contract = contract
        self._ledger = ledger
        self._confirmations = confirmations
        self._start_block = start_block
        self._chunk = chunk_blocks
        self._max_chunk = chunk_blocks
        self._on_reorged = on_reorged
        self._decoder = RequestDecoder.from_abi(contract.abi)
        self._topic = Web3.to_hex(self._decoder.topic)
        self.chain_id = w3.eth.chain_id
        self.address = str(contract.address)

    def poll(self) -> int:
        """Read every confirmed block past the checkpoint; returns the number of new jobs."""
        head = self._w3.eth.block_number
        safe_head = head - self._confirmations
        self._check_reorg()
        checkpoint = self._ledger.checkpoint(self.chain_id, self.address)
        start = checkpoint.block_number + 1 if checkpoint else self._start_block
        metrics.LISTENER_LAG.set(max(0, safe_head - (start - 1)))
        new = 0
        while start <= safe_head:
            end = min(start + self._chunk - 1, safe_head)
            try:
                jobs, blocks = self._read_range(start, end)
            except (Web3RPCError, ValueError) as exc:
                if end == start or self._chunk <= MIN_CHUNK:
                    raise
                self._chunk = max(MIN_CHUNK, self._chunk // 2)
                log.info("eth_getLogs refused %d blocks (%s); trying %d", end - start + 1, exc,
                         self._chunk)
                continue
            if jobs is None:
                continue  # the range moved under a reorg while it was read: read it again
            added = self._ledger.record_block_range_bulk(self.chain_id, self.address, jobs,
                                                         blocks, end)
            if added:
                log.info("blocks %d-%d: %d new job(s)", start, end, added)
                metrics.JOBS_SEEN.inc(added)
            new += added
            start = end + 1
            self._chunk = min(self._max_chunk, self._chunk * 2)
        metrics.LISTENER_LAG.set(max(0, safe_head - (start - 1)))
        return new

    def _read_range(self, start: int, end: int) -> tuple[list[NewJob] | None, dict[int, str]]:
        """The requests in blocks start..end and the hashes to remember (the range's last block
        and each block holding a request), read consistently; None if a reorg intervened."""
        end_hash = Web3.to_hex(self._w3.eth.get_block(end)["hash"])
        raw_logs = self._get_logs(start, end)
        if Web3.to_hex(self._w3.eth.get_block(end)["hash"]) != end_hash:
            return None, {}
        blocks: dict[int, str] = {end: end_hash}
        jobs: list[NewJob] = []
        for raw in raw_logs:
            if not isinstance(raw, dict):
                metrics.UNDECODABLE_LOGS.inc()
                log.error("eth_getLogs answered a log that is not an object: %.100r", raw)
                continue
            if raw.get("removed"):
                continue
            decoded = self._decoder.decode(raw)
            if isinstance(decoded, UndecodableRequest):
                metrics.UNDECODABLE_LOGS.inc()
                log.error("undecodable JobRequested log in block %d (tx %s, log %d): %s",
                          decoded.block_number, decoded.tx_hash, decoded.log_index, decoded.reason)
                continue
            jobs.append(decoded)
            blocks[decoded.block_number] = decoded.block_hash
        return jobs, blocks

    def _get_logs(self, start: int, end: int) -> list[Any]:
        """The raw JSON logs of our request topic in start..end; raises `Web3RPCError` when the
        RPC refuses the range (as `w3.eth.get_logs` would), so the range is halved."""
        params = {"address": self.address, "topics": [self._topic],
                  "fromBlock": hex(start), "toBlock": hex(end)}
        response: Any = self._w3.provider.make_request(RPCEndpoint("eth_getLogs"), [params])
        error = response.get("error") if isinstance(response, dict) else "no JSON-RPC response"
        if error is not None:
            message = error.get("message", error) if isinstance(error, dict) else error
            raise Web3RPCError(f"eth_getLogs {start}-{end}: {message}", rpc_response=response)
        result = response.get("result")
        if not isinstance(result, list):
            raise Web3RPCError(f"eth_getLogs {start}-{end} answered {result!r:.100}",
                               rpc_response=response)
        return result

    def _check_reorg(self) -> None:
        checkpoint = self._ledger.checkpoint(self.chain_id, self.address)
        if checkpoint is None or self._canonical(checkpoint.block_number, checkpoint.block_hash):
            return
        ancestor, ancestor_hash = self._start_block - 1, ""
        for seen in self._ledger.recent_blocks(self.chain_id, self.address):
            if self._canonical(seen.block_number, seen.block_hash):
                ancestor, ancestor_hash = seen.block_number, seen.block_hash
                break
        depth = checkpoint.block_number - ancestor
        metrics.REORGS.inc()
        log.critical(
            "REORG deeper than the %d confirmations: block %d (%s) left the chain; rewinding "
            "%d block(s) to %d. Raise COD_CONFIRMATIONS for this chain.",
            self._confirmations, checkpoint.block_number, checkpoint.block_hash, depth, ancestor)
        reorged = self._ledger.rewind(self.chain_id, self.address, ancestor, ancestor_hash)
        if reorged and self._on_reorged is not None:
            self._on_reorged(reorged)

    def _canonical(self, number: int, block_hash: str) -> bool:
        block = self._w3.eth.get_block(number)
        return Web3.to_hex(block["hash"]) == block_hash
