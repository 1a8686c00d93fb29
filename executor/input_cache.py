"""A node-local cache of fetched IPFS inputs, keyed by their content path, shared by the node's
worker processes and mounted read-only into every job that names them.

An IPFS path names its content for good, so a repeat job over data this node already fetched need
not copy it out of Kubo again (8 s for 1 GB). Each entry is the capped volume the input was first
fetched onto (`stage`: a sparse ext4 image sized by that job's input caps, so the streaming size
and entry caps hold as before), remounted read-only once complete (`commit`): no process, the
worker's included, can change what a later job reads, and jobs get it through a read-only bind
mount on top. The index (SQLite) and every change to it are guarded by an exclusive `flock`, so
the node's worker processes share it safely. The operator bounds the cache's disk use
(`COD_INPUT_CACHE_SIZE`, the images' allocated bytes): least recently used entries are evicted to
admit a new one, never an entry a running job holds a lease on (a lease of a process that died is
dropped). An input that does not fit stays the job's own volume, removed after it.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import secrets
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from executor.volumes import InputVolume, _umount
from protocol.tree import remove

log = logging.getLogger(__name__)

OWNER = "owner"  # in a staged entry: the process fetching it ("pid starttime")
STAGING_GRACE_S = 60.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, home TEXT NOT NULL, disk INTEGER NOT NULL,
    bytes INTEGER NOT NULL, files INTEGER NOT NULL, used REAL NOT NULL);
CREATE TABLE IF NOT EXISTS leases (lease TEXT PRIMARY KEY, home TEXT NOT NULL, pid INTEGER NOT NULL,
    started TEXT NOT NULL);
"""


@dataclass(frozen=True)
class CachedInput:
    """An entry held for one job: its read-only content (a file or a directory) at `path`."""

    path: Path
    bytes: int  # the content's bytes and entries (files and directories), as measured when fetched
    files: int
    lease: str


class Staged:
    """An input being fetched onto a capped volume of its own, under the cache directory."""

    def __init__(self, home: Path, cap_bytes: int, max_files: int) -> None:
        home.mkdir(parents=True)
        (home / OWNER).write_text(_process_id(os.getpid()))
        self.home = home
        self.volume = InputVolume(home, cap_bytes, max_files)
        self.path = self.volume.path / "data"  # where the provider writes the content

    @property
    def capped(self) -> bool:
        return self.volume.capped


class InputCache:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self._dir = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        with self._locked() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
        self.clean()

    @staticmethod
    def key(source: str) -> str:
        return hashlib.sha256(source.encode()).hexdigest()

    def acquire(self, source: str) -> CachedInput | None:
        """The cached content of `source`, leased to this process until `release`; None if absent."""
        key = self.key(source)
        with self._locked() as db:
            row = db.execute("SELECT home, bytes, files FROM entries WHERE key = ?",
                             (key,)).fetchone()
            if row is None:
                return None
            home = Path(row[0])
            if not _ensure_mounted(home):  # not mounted since a reboot, and it will not mount
                self._evict(db, key, home)
                return None
            db.execute("UPDATE entries SET used = ? WHERE key = ?", (time.time(), key))
            return CachedInput(_content(home), row[1], row[2], self._lease(db, home))

    def stage(self, cap_bytes: int, max_files: int) -> Staged:
        """A fresh capped volume to fetch an input onto (see `Staged.capped`: without root it is a
        plain directory, which `commit` does not admit)."""
        return Staged(self._dir / f"e-{secrets.token_hex(8)}", cap_bytes, max_files)

    def commit(self, source: str, staged: Staged, size: int, files: int) -> CachedInput | None:
        """Admit a fetched input: made read-only, room made by evicting unleased entries, and
        leased to this process. None when it is not admitted (the caller then `discard`s it after
        its job): no capped volume, larger than the cache, no room, or already cached."""
        if not staged.capped or not _remount_read_only(staged.home):
            return None
        disk = _allocated(staged.home)
        key = self.key(source)
        with self._locked() as db:
            if db.execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchone():
                return None  # another worker fetched it meanwhile
            if not self._make_room(db, disk):
                return None
            db.execute("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                       (key, str(staged.home), disk, size, files, time.time()))
            (staged.home / OWNER).unlink(missing_ok=True)
            return CachedInput(staged.path, size, files, self._lease(db, staged.home))

    def discard(self, staged: Staged) -> None:
        """Remove a staged input that was not admitted."""
        _destroy(staged.home)

    def release(self, held: CachedInput) -> None:
        with self._locked() as db:
            db.execute("DELETE FROM leases WHERE lease = ?", (held.lease,))

    def total_bytes(self) -> int:
        with self._locked() as db:
            return int(db.execute("SELECT COALESCE(SUM(disk), 0) FROM entries").fetchone()[0])

    def clean(self) -> int:
        """Remove staged inputs whose process died mid-fetch, and leases of dead processes (when
        a worker starts; safe while others run). Returns how many staged inputs went."""
        removed = 0
        with self._locked() as db:
            self._drop_dead_leases(db)
            known = {row[0] for row in db.execute("SELECT home FROM entries")}
            for home in self._dir.glob("e-*"):
                if str(home) in known or _being_staged(home):
                    continue
                _destroy(home)
                removed += 1
        return removed

    # internals -----------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        """The index, under the cache's exclusive lock (every reader and writer takes it)."""
        with open(self._dir / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            db = sqlite3.connect(self._dir / "index.sqlite", isolation_level=None, timeout=30)
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            finally:
                db.close()

    @staticmethod
    def _lease(db: sqlite3.Connection, home: Path) -> str:
        lease = secrets.token_hex(8)
        pid = os.getpid()
        db.execute("INSERT INTO leases VALUES (?, ?, ?, ?)", (lease, str(home), pid,
                                                              _process_id(pid)))
        return lease

    def _make_room(self, db: sqlite3.Connection, disk: int) -> bool:
        if disk > self.max_bytes:
            return False
        self._drop_dead_leases(db)
        total = int(db.execute("SELECT COALESCE(SUM(disk), 0) FROM entries").fetchone()[0])
        idle = db.execute("SELECT key, home, disk FROM entries WHERE home NOT IN "
                          "(SELECT home FROM leases) ORDER BY used").fetchall()
        while total + disk > self.max_bytes and idle:
            key, home, size = idle.pop(0)
            self._evict(db, key, Path(home))
            total -= size
        return total + disk <= self.max_bytes

    @staticmethod
    def _evict(db: sqlite3.Connection, key: str, home: Path) -> None:
        db.execute("DELETE FROM entries WHERE key = ?", (key,))
        _destroy(home)

    @staticmethod
    def _drop_dead_leases(db: sqlite3.Connection) -> None:
        for lease, process in db.execute("SELECT lease, started FROM leases").fetchall():
            if not _alive(process):
                db.execute("DELETE FROM leases WHERE lease = ?", (lease,))


def _content(home: Path) -> Path:
    return home / "inputs-fs" / "inputs" / "data"  # as `Staged` lays it out


def _process_id(pid: int) -> str:
    """The pid and its start time: a pid reused by another process does not match."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            started = stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        started = "?"
    return f"{pid} {started}"


def _alive(process: str) -> bool:
    """Whether the process `_process_id` described is still running."""
    pid = process.split(" ", 1)[0]
    return pid.isdigit() and _process_id(int(pid)) == process


def _being_staged(home: Path) -> bool:
    """Its fetching process is alive (or it is being made this instant: no owner written yet)."""
    try:
        owner = (home / OWNER).read_text()
    except FileNotFoundError:
        owner = ""
    if owner:
        return _alive(owner)
    return time.time() - home.stat().st_mtime < STAGING_GRACE_S


def _mount(args: list[str]) -> bool:
    result = subprocess.run(["mount", *args], capture_output=True, timeout=60)
    if result.returncode != 0:
        log.warning("input cache: mount %s failed: %s", " ".join(args),
                    result.stderr.decode(errors="replace").strip())
    return result.returncode == 0


def _remount_read_only(home: Path) -> bool:
    return _mount(["-o", "remount,ro,nosuid,nodev", str(home / "inputs-fs")])


def _ensure_mounted(home: Path) -> bool:
    mountpoint = home / "inputs-fs"
    if os.path.ismount(mountpoint):
        return True
    return _mount(["-o", "loop,ro,nosuid,nodev", str(home / "inputs.img"), str(mountpoint)])


def _allocated(home: Path) -> int:
    """What the entry costs the node's disk: the sparse image's allocated bytes."""
    return (home / "inputs.img").stat().st_blocks * 512


def _destroy(home: Path) -> None:
    mountpoint = home / "inputs-fs"
    if os.path.ismount(mountpoint):
        _umount(mountpoint)
    try:
        remove(home)
    except OSError as exc:
        log.warning("input cache: could not remove %s: %s", home, exc)
