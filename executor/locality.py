"""The node's side of routing jobs to data: what this node's Kubo holds (published with each
heartbeat, read by the bridge's placement, `bridge.placement`), and whether a job's inputs were
local when it ran."""

from __future__ import annotations

import logging

from protocol.ipfs import IpfsError, KuboClient
from protocol.spec import JobSpec, input_roots

log = logging.getLogger(__name__)

STATS_PER_SCAN = 200  # new pins sized per heartbeat


class HoldingsScanner:
    """What this node's Kubo holds: pinned CIDs and their sizes (a CID's size never changes, so
    each is measured once). At most `limit` of them, the largest: a heartbeat does not grow with
    the pin set (the large holdings are what routing to data is worth)."""

    def __init__(self, kubo: KuboClient, limit: int = 1000) -> None:
        self._kubo = kubo
        self._limit = limit
        self._sizes: dict[str, int] = {}

    def scan(self) -> dict[str, int]:
        holdings = {}
        pinned = self._kubo.pinned()
        still = set(pinned)
        self._sizes = {cid: size for cid, size in self._sizes.items() if cid in still}
        budget = STATS_PER_SCAN  # a beat is not held up by a large new pin set: the rest next time
        for cid in pinned:
            if cid not in self._sizes:
                if budget <= 0:
                    continue
                budget -= 1
                try:
                    stat = self._kubo.stat(cid, timeout_s=5)
                    # a file's own size; a directory's, with its content (and UnixFS overhead)
                    self._sizes[cid] = stat.size if stat.type == "file" else stat.cumulative_size
                except IpfsError as exc:
                    log.info("cannot size pinned %s: %s", cid, exc)
                    continue
            holdings[cid] = self._sizes[cid]
        largest = sorted(holdings.items(), key=lambda item: (-item[1], item[0]))[:self._limit]
        return dict(largest)


class LocalityProbe:
    """Measures, around a job's input fetch, whether its inputs were local and how many bytes the
    node's Kubo received from peers (bitswap; with several jobs fetching at once on one node the
    figure covers them all)."""

    def __init__(self, kubo: KuboClient) -> None:
        self._kubo = kubo

    def held(self, spec: JobSpec) -> bool | None:
        roots = input_roots(spec)
        if not roots:
            return None
        # one pin lookup per input root: listing every pin would grow with every result published
        return all(self._kubo.is_pinned(cid) for cid in roots)

    def received(self) -> int:
        return self._kubo.bitswap_received()
