"""Bounded reads of the JobManager's logs for the read side (`cod job …`, `cod api`) when no
ledger is configured.

Every read walks fixed block windows from a known point (the head, a cursor, a job's request
block) and stops when it has what it needs or has spent its block budget: no request scans the
whole history. Logs are fetched raw and decoded one by one (`bridge.events`), so a request whose
bytes do not decode is reported as such instead of failing the read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from eth_utils.abi import event_abi_to_log_topic
from web3 import Web3
from web3.contract import Contract

from bridge.events import RequestDecoder, UndecodableRequest
from bridge.ledger import NewJob

DEFAULT_SCAN_BLOCKS = 200_000  # blocks one read may scan (COD_API_SCAN_BLOCKS for `cod api`)


@dataclass(frozen=True)
class RequestLog:
    """One `JobRequested` log: decoded, or why it is not."""

    block_number: int
    log_index: int
    decoded: NewJob | UndecodableRequest

    @property
    def job_id(self) -> int | None:
        return self.decoded.job_id


class LogScanner:
    def __init__(self, w3: Web3, manager: Contract, chunk_blocks: int,
                 budget_blocks: int = DEFAULT_SCAN_BLOCKS) -> None:
        self.w3 = w3
        self.manager = manager
        self.chunk = max(1, chunk_blocks)
        self.budget = max(1, budget_blocks)
        self.decoder = RequestDecoder.from_abi(manager.abi)
        self._events: dict[str, Any] = {str(e.get("name")): e for e in manager.abi
                                        if e.get("type") == "event"}
        self.exhausted_at: int | None = None  # where the last scan stopped for lack of budget

    # -- JobRequested ----------------------------------------------------------------------------
    def requests(self, low: int, high: int, requester: str | None = None,
                 job_ids: list[int] | None = None, newest_first: bool = True
                 ) -> Iterator[RequestLog]:
        """Requests in blocks low..high, window by window, in block order (newest first by
        default). Stops at the budget; `exhausted_at` says where (None: the range was read)."""
        topics: list[Any] = [Web3.to_hex(self.decoder.topic),
                             [_word(i) for i in job_ids] if job_ids else None,
                             _address_word(requester) if requester else None]
        for raw in self._windows(low, high, topics, newest_first):
            if raw.get("removed"):
                continue
            decoded = self.decoder.decode(raw)
            yield RequestLog(int(raw["blockNumber"]), int(raw["logIndex"]), decoded)

    def find_request(self, job_id: int, low: int, high: int) -> RequestLog | None:
        """The request of `job_id` in low..high, newest window first."""
        return next(iter(self.requests(low, high, job_ids=[job_id])), None)

    # -- other events ----------------------------------------------------------------------------
    def events(self, name: str, job_id: int, low: int, high: int) -> Iterator[dict[str, Any]]:
        """`name` events of one job in low..high, oldest first; a log that does not decode (a
        string that is not UTF-8) comes back with `args` holding what could be read."""
        topics = [Web3.to_hex(event_abi_to_log_topic(self._events[name])),
                  _word(job_id)]
        for raw in self._windows(low, high, topics, newest_first=False):
            if not raw.get("removed"):
                yield self.decode_event(name, raw)

    def logs(self, topics: list[Any], low: int, high: int) -> list[Any]:
        """Raw logs matching `topics` (any event: a list in a position is an OR) in low..high,
        oldest first, within the scan budget; reorged (`removed`) ones left out."""
        return [raw for raw in self._windows(low, high, topics, newest_first=False)
                if not raw.get("removed")]

    def decode_event(self, name: str, raw: Mapping[str, Any]) -> dict[str, Any]:
        event = getattr(self.manager.events, name)()
        try:
            entry = event.process_log(raw)
            return {"args": dict(entry["args"]), "blockNumber": int(entry["blockNumber"]),
                    "transactionHash": entry["transactionHash"]}
        except Exception as exc:  # hostile bytes: web3 raises several types; report, never fail
            return {"args": {"jobId": int.from_bytes(bytes(raw["topics"][1]), "big"),
                             "undecodable": f"{type(exc).__name__}"},
                    "blockNumber": int(raw["blockNumber"]),
                    "transactionHash": raw["transactionHash"]}

    # -- windows ---------------------------------------------------------------------------------
    def _windows(self, low: int, high: int, topics: list[Any], newest_first: bool
                 ) -> Iterator[Any]:
        self.exhausted_at = None
        spent = 0
        cursor = high if newest_first else low
        while low <= cursor <= high:
            if spent >= self.budget:
                self.exhausted_at = cursor
                return
            span = min(self.chunk, self.budget - spent)
            lo, hi = ((max(low, cursor - span + 1), cursor) if newest_first
                      else (cursor, min(high, cursor + span - 1)))
            logs = list(self.w3.eth.get_logs({"address": self.manager.address, "topics": topics,
                                              "fromBlock": lo, "toBlock": hi}))
            logs.sort(key=lambda raw: (int(raw["blockNumber"]), int(raw["logIndex"])),
                      reverse=newest_first)
            yield from logs
            spent += hi - lo + 1
            cursor = lo - 1 if newest_first else hi + 1


def _word(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


def _address_word(address: str) -> str:
    return "0x" + "0" * 24 + address.lower().removeprefix("0x")
