"""The job's result directory on a filesystem of its own, so its size is capped while it runs.

Each job's result directory (`stdout`, `stderr`, the output folders) lives on a sparse ext4 image,
loop-mounted by the worker: a job that writes past the cap gets `ENOSPC` inside the container and
cannot fill the node's disk. Creating one takes about 10 ms whatever the size (sparse file, lazy
inode tables). It needs root (mount); without it the worker falls back to a plain directory and
checks the size only after the run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

MiB = 1024 * 1024


class ResultVolume:
    def __init__(self, job_dir: Path, cap_bytes: int, room_for_logs: int) -> None:
        self.cap_bytes = cap_bytes
        self._image = job_dir / "result.img"
        self._mountpoint = job_dir / "result-fs"
        self._mountpoint.mkdir(parents=True)
        size = cap_bytes + room_for_logs + cap_bytes // 32 + 16 * MiB  # ext4 metadata
        self.capped = _make_fs(self._image, self._mountpoint, size)
        self.path = self._mountpoint / "result"  # not the fs root: it holds lost+found
        self.path.mkdir()

    def size_of(self, directory: Path) -> int:
        """Bytes of the files under `directory` (what the job wrote to an output)."""
        total = 0
        for root, _dirs, files in os.walk(directory):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(root, name)).st_size
        return total

    def close(self) -> None:
        if self.capped:
            _umount(self._mountpoint)
        self._image.unlink(missing_ok=True)


def _make_fs(image: Path, mountpoint: Path, size: int) -> bool:
    try:
        with image.open("wb") as handle:
            handle.truncate(size)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal",
                        "-E", "lazy_itable_init=1,nodiscard", str(image)],
                       check=True, capture_output=True, timeout=60)
        subprocess.run(["mount", "-o", "loop,nosuid,nodev", str(image), str(mountpoint)],
                       check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        log.warning("no capped result filesystem (%s %s): output size is checked after the run",
                    exc, detail.decode(errors="replace").strip())
        image.unlink(missing_ok=True)
        return False
    return True


def _umount(mountpoint: Path) -> None:
    result = subprocess.run(["umount", str(mountpoint)], capture_output=True, timeout=60)
    if result.returncode != 0:  # still busy (a container not yet gone): detach lazily
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=60)


def clean_work_dir(work_dir: Path) -> int:
    """Unmount and remove what an earlier (killed) run of this worker left; returns how many job
    directories there were."""
    if not work_dir.exists():
        return 0
    prefix = str(work_dir.resolve()) + "/"
    mounts = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                mounts.append(point)
    for point in sorted(mounts, reverse=True):
        _umount(Path(point))
    stale = list(work_dir.iterdir())
    for entry in stale:
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    return len(stale)
