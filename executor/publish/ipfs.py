"""Publishes a result directory to the node's Kubo: added as CIDv1, pinned, its root stat'ed
(retrievable) before the CID is handed on. Kubo outages are retried in place with backoff. Files
are streamed one at a time over an iterative walk (`KuboClient.add_path`)."""

from __future__ import annotations

import logging
from pathlib import Path

from tenacity import (
    Retrying as _Retrying,
)
from tenacity import (
    before_sleep_log,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from executor.retention import PublishedResults
from protocol.ipfs import IpfsError, IpfsUnavailable, KuboClient
from protocol.tree import DEFAULT_MAX_DEPTH

log = logging.getLogger(__name__)


class IpfsPublisher:
    def __init__(self, kubo: KuboClient, retry_for_s: float = 120.0,
                 max_depth: int = DEFAULT_MAX_DEPTH, published: PublishedResults | None = None) -> None:
        self._kubo = kubo
        self._published = published  # recorded for the retention sweep
        self._retry_for_s = retry_for_s
        self._max_depth = max_depth  # the runner refuses deeper outputs first, with a reason

    def publish(self, result_dir: Path) -> str:
        """Raises IpfsUnavailable if Kubo stays unreachable for the whole retry window."""
        for attempt in self._retrying():
            with attempt:
                cid = self._kubo.add_path(result_dir, self._max_depth)
                self._kubo.stat(cid)  # retrievable before it is announced
                if self._published is not None:
                    self._published.record(cid)
                return cid
        raise AssertionError("unreachable")  # Retrying re-raises the last error

    def is_available(self, cid: str) -> bool:
        try:
            return self._kubo.is_pinned(cid) or self._kubo.stat(cid, timeout_s=10) is not None
        except IpfsError:
            return False

    def _retrying(self) -> _Retrying:
        return _Retrying(
            retry=retry_if_exception_type(IpfsUnavailable),
            wait=wait_exponential(multiplier=0.5, max=15),
            stop=stop_after_delay(self._retry_for_s),
            before_sleep=before_sleep_log(log, logging.WARNING),
            reraise=True,
        )
