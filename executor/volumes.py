"""The job's result directory and its inputs on filesystems of their own, so their size is capped.

Each job's result directory (`stdout`, `stderr`, the output folders) lives on a sparse ext4 image,
loop-mounted by the worker: a job that writes past the cap gets `ENOSPC` inside the container and
cannot fill the node's disk. Its inputs are fetched onto another (`InputVolume`), sized by the
node's input cap and the job's `resources.disk`, with an inode count to match the file cap: an
input whose DAG lies about its size stops at `ENOSPC` too. Creating one takes about 10 ms whatever
the size (sparse file, lazy inode tables). It needs root (mount); without it the worker falls back
to a plain directory and checks the size only after the run (inputs: as they stream).
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from protocol.tree import remove

log = logging.getLogger(__name__)

MiB = 1024 * 1024
KEPT_PREFIX = "published.sqlite"  # the record of results published (executor.retention): kept
INPUT_CACHE = "input-cache"  # the node's cache of inputs (executor.input_cache): kept, unmounted
INODE_BYTES = 256  # ext4's inode size: what each reserved inode costs on the image


class CappedVolume:
    """A directory (`path`) on a sparse ext4 image of `size` bytes with at least `inodes` inodes,
    loop-mounted under the job directory as `<name>-fs`."""

    def __init__(self, job_dir: Path, name: str, size: int, inodes: int | None = None) -> None:
        self._image = job_dir / f"{name}.img"
        self._mountpoint = job_dir / f"{name}-fs"
        self._mountpoint.mkdir(parents=True)
        self.capped = _make_fs(self._image, self._mountpoint, size, inodes)
        self.path = self._mountpoint / name  # not the fs root: it holds lost+found
        self.path.mkdir()

    def close(self) -> None:
        if self.capped:
            _umount(self._mountpoint)
        else:  # a plain directory: a job's tree may be too deep for shutil.rmtree
            remove(self.path)
        self._image.unlink(missing_ok=True)


def result_volume_size(cap_bytes: int, room_for_logs: int) -> int:
    """The image size of a result volume (also the key of `executor.volume_pool`)."""
    return cap_bytes + room_for_logs + cap_bytes // 32 + 16 * MiB  # ext4 metadata


class ResultVolume(CappedVolume):
    def __init__(self, job_dir: Path, cap_bytes: int, room_for_logs: int) -> None:
        self.cap_bytes = cap_bytes
        super().__init__(job_dir, "result", result_volume_size(cap_bytes, room_for_logs))


class InputVolume(CappedVolume):
    """Where a job's inputs are fetched: whatever an input's metadata claims, the job's inputs
    cannot take more than `cap_bytes` (and `max_files` entries) of the node's disk."""

    def __init__(self, job_dir: Path, cap_bytes: int, max_files: int) -> None:
        self.cap_bytes = cap_bytes
        inodes = max_files + 64
        size = cap_bytes + inodes * INODE_BYTES + cap_bytes // 32 + 16 * MiB  # ext4 metadata
        super().__init__(job_dir, "inputs", size, inodes)
        if self.capped:  # the job's uid reads them: the fs root is root's, 0755
            self.path.chmod(0o755)


def _make_fs(image: Path, mountpoint: Path, size: int, inodes: int | None = None) -> bool:
    try:
        with image.open("wb") as handle:
            handle.truncate(size)
        inode_args = ["-N", str(inodes)] if inodes else []
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", *inode_args,
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
    directories there were. The input cache's entries are unmounted but kept (remounted, read-only,
    when a job next needs them)."""
    if not work_dir.is_dir():
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
    stale = [e for e in work_dir.iterdir() if not e.name.startswith((KEPT_PREFIX, INPUT_CACHE))]
    for entry in stale:
        try:
            remove(entry)
        except OSError as exc:
            log.warning("could not remove %s: %s", entry, exc)
    return len(stale)
