"""Ready, capped result volumes, reused from job to job so the job path skips mkfs and mount.

A result volume (`executor.volumes.ResultVolume`) costs about 85 ms to make, mount and unmount.
The pool keeps a few of them per worker process, keyed by their exact size: a job takes one of its
size (or a new one), and gives it back after it is published. Given back, a volume is wiped and
checked empty (nothing but `lost+found` and an empty result directory; inodes and blocks in use as
when it was made); checked again when taken; a volume that fails a check, or whose job wrote many
files (cheaper to make anew than to delete), is unmounted and destroyed, never handed on. Pooled
volumes live under the work directory, so a killed worker's are removed by `clean_work_dir`.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from executor.volumes import _make_fs, _umount
from protocol.tree import remove

log = logging.getLogger(__name__)

RESULT = "result"
WIPE_MAX_INODES = 2_000  # a job that left more entries than this: destroy its volume, not wipe it


@dataclass
class PooledVolume:
    """A mounted ext4 image of `size` bytes; the job writes under `path`."""

    size: int
    image: Path
    mountpoint: Path
    inodes_used: int  # as made: what an empty volume uses
    blocks_free: int

    @property
    def path(self) -> Path:
        return self.mountpoint / RESULT

    def usage(self) -> tuple[int, int]:
        """(inodes used, blocks free) of the volume's filesystem."""
        info = os.statvfs(self.mountpoint)
        return info.f_files - info.f_ffree, info.f_bfree

    def is_empty(self) -> bool:
        try:
            if not os.path.ismount(self.mountpoint):
                return False
            if sorted(os.listdir(self.mountpoint)) != ["lost+found", RESULT]:
                return False
            if os.listdir(self.path) or os.listdir(self.mountpoint / "lost+found"):
                return False
            return self.usage() == (self.inodes_used, self.blocks_free)
        except OSError:
            return False


class VolumePool:
    """Per worker process (no locking: one job at a time uses it). `max_idle`: volumes kept ready
    at most, all sizes together (the least recently given back is destroyed first)."""

    def __init__(self, directory: Path, max_idle: int = 4) -> None:
        self._dir = directory
        self._max_idle = max_idle
        self._idle: OrderedDict[str, PooledVolume] = OrderedDict()  # token -> volume
        self.unavailable = False  # set when a volume could not be made (no root): stop trying

    def acquire(self, size: int) -> PooledVolume | None:
        """An empty, mounted volume of exactly `size` bytes; None if none can be made (no root:
        the caller falls back to a plain directory)."""
        for token, volume in list(self._idle.items()):
            if volume.size != size:
                continue
            del self._idle[token]
            if volume.is_empty():  # again: nothing may have reached it since it was given back
                return volume
            log.warning("pooled volume %s is not empty: destroyed", volume.mountpoint)
            _destroy(volume)
        return self._make(size)

    def release(self, volume: PooledVolume) -> None:
        """Take a volume back after its job: wiped and kept if it checks empty, else destroyed."""
        if self._max_idle <= 0 or not self._wipe(volume):
            _destroy(volume)
            return
        self._idle[volume.image.parent.name] = volume
        while len(self._idle) > self._max_idle:
            _destroy(self._idle.popitem(last=False)[1])

    def close(self) -> None:
        """Unmount and remove every idle volume (at worker shutdown)."""
        while self._idle:
            _destroy(self._idle.popitem()[1])
        try:
            remove(self._dir)
        except OSError as exc:  # a volume still in use: `clean_work_dir` removes it later
            log.warning("could not remove the volume pool %s: %s", self._dir, exc)

    @property
    def idle(self) -> int:
        return len(self._idle)

    def _make(self, size: int) -> PooledVolume | None:
        if self.unavailable:
            return None
        home = self._dir / secrets.token_hex(8)
        mountpoint = home / "fs"
        mountpoint.mkdir(parents=True)
        image = home / "volume.img"
        if not _make_fs(image, mountpoint, size):
            remove(home)
            self.unavailable = True
            return None
        (mountpoint / RESULT).mkdir()
        info = os.statvfs(mountpoint)
        return PooledVolume(size, image, mountpoint, info.f_files - info.f_ffree, info.f_bfree)

    @staticmethod
    def _wipe(volume: PooledVolume) -> bool:
        try:
            if not os.path.ismount(volume.mountpoint):
                return False
            if volume.usage()[0] - volume.inodes_used > WIPE_MAX_INODES:
                return False
            for name in os.listdir(volume.mountpoint):
                if name != "lost+found":
                    remove(volume.mountpoint / name)
            for name in os.listdir(volume.mountpoint / "lost+found"):
                remove(volume.mountpoint / "lost+found" / name)
            volume.path.mkdir()
        except OSError as exc:
            log.warning("could not wipe pooled volume %s: %s", volume.mountpoint, exc)
            return False
        return volume.is_empty()


def _destroy(volume: PooledVolume) -> None:
    if os.path.ismount(volume.mountpoint):
        _umount(volume.mountpoint)
    try:
        remove(volume.image.parent)
    except OSError as exc:
        log.warning("could not remove pooled volume %s: %s", volume.image.parent, exc)
