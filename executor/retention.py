"""Results are kept pinned for the operator's retention (`result_retention_s`), then unpinned.

Every result a node publishes is pinned on its Kubo; without an end, a stream of cheap jobs fills
the node's disk and the pin set every heartbeat reports. The publisher records each result CID with
the time it was (last) published in a small SQLite file in the work directory (the node's own
disk, spared by the start-up clean-up; not Redis, which whoever reaches it could use to make the
node unpin its datasets); a sweep in the worker's main process unpins those older than the
retention. Kubo's garbage collector reclaims the blocks later. A result published again (an
identical job) is kept longer.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from celery import signals

from executor.config import WorkerSettings
from executor.volumes import KEPT_PREFIX
from protocol.ipfs import IpfsError, IpfsUnavailable, KuboClient

log = logging.getLogger(__name__)

SWEEP_BATCH = 500


class PublishedResults:
    """The results a node published and when (one row per node and CID)."""

    def __init__(self, path: Path, node_id: str) -> None:
        self._path = path
        self._node = node_id
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS published (node TEXT NOT NULL, cid TEXT NOT NULL,"
                       " at REAL NOT NULL, PRIMARY KEY (node, cid))")
            db.execute("CREATE INDEX IF NOT EXISTS published_at ON published (node, at)")

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A connection per use: the worker's processes fork, and each writes its own results."""
        db = sqlite3.connect(self._path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

    def record(self, cid: str, at: float | None = None) -> None:
        with self._db() as db:
            db.execute("INSERT INTO published (node, cid, at) VALUES (?, ?, ?) ON CONFLICT (node, cid)"
                       " DO UPDATE SET at = max(at, excluded.at)", (self._node, cid, at or time.time()))

    def expired(self, before: float, limit: int = SWEEP_BATCH) -> list[str]:
        with self._db() as db:
            rows = db.execute("SELECT cid FROM published WHERE node = ? AND at < ? ORDER BY at LIMIT ?",
                              (self._node, before, limit)).fetchall()
        return [str(row[0]) for row in rows]

    def forget(self, cid: str, before: float) -> None:
        """Drop the record, unless the CID was published again since `before`."""
        with self._db() as db:
            db.execute("DELETE FROM published WHERE node = ? AND cid = ? AND at < ?",
                       (self._node, cid, before))

    def count(self) -> int:
        with self._db() as db:
            return int(db.execute("SELECT count(*) FROM published WHERE node = ?",
                                  (self._node,)).fetchone()[0])


def sweep(kubo: KuboClient, published: PublishedResults, retention_s: float,
          now: float | None = None) -> int:
    """Unpin the results published more than `retention_s` ago; returns how many. Raises
    IpfsUnavailable if Kubo is down (the records stay for the next sweep)."""
    before = (now or time.time()) - retention_s
    removed = 0
    while batch := published.expired(before):
        for cid in batch:
            try:
                kubo.unpin(cid)
            except IpfsUnavailable:
                raise
            except IpfsError as exc:  # not pinned any more (an operator unpinned it): nothing to do
                log.info("result %s: %s", cid, exc)
            published.forget(cid, before)
            removed += 1
        if len(batch) < SWEEP_BATCH:
            break
    return removed


def published_results(settings: WorkerSettings) -> PublishedResults:
    return PublishedResults(settings.result_index or settings.work_dir / KEPT_PREFIX, settings.node_id)


class RetentionSweeper:
    """A daemon thread sweeping every `interval_s` (the worker's main process runs one)."""

    def __init__(self, kubo: KuboClient, published: PublishedResults, retention_s: float,
                 interval_s: float) -> None:
        self._kubo = kubo
        self._published = published
        self._retention_s = retention_s
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cod-retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            try:
                removed = sweep(self._kubo, self._published, self._retention_s)
                if removed:
                    log.info("unpinned %d result(s) older than %g s", removed, self._retention_s)
            except (IpfsError, sqlite3.Error) as exc:
                log.warning("result retention sweep failed: %s", exc)
            if self._stop.wait(self._interval_s):
                return


_sweeper: RetentionSweeper | None = None


def _on_ready(**_kwargs: Any) -> None:
    global _sweeper
    settings = WorkerSettings()
    if settings.result_retention_s <= 0:
        return
    interval = min(3600.0, max(1.0, settings.result_retention_s / 10))
    _sweeper = RetentionSweeper(KuboClient(settings.ipfs_api, timeout=30),
                                published_results(settings), settings.result_retention_s, interval)
    _sweeper.start()


def _on_shutdown(**_kwargs: Any) -> None:
    if _sweeper is not None:
        _sweeper.stop()


# connected here, not by decorator (Celery's are untyped): importing the module is enough
signals.worker_ready.connect(_on_ready, weak=False)
signals.worker_shutdown.connect(_on_shutdown, weak=False)
