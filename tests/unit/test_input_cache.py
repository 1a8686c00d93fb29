"""The node's input cache (executor.input_cache) and the runner's use of it, with fake storage and
engine but real capped volumes (root, loop mounts): a cached input is fetched once, is read-only
to everyone (the worker too), stays within its size by LRU eviction, and never evicts an entry a
job holds."""

from __future__ import annotations

import errno
import functools
import json
import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.engines.base import RunOutcome, RunRequest
from executor.input_cache import InputCache
from executor.runner import JobRunner, NodePolicy
from executor.storage import StorageRegistry
from protocol.capacity import Capacity
from tests.unit.test_registries import FakePublisher

MiB = 1024 * 1024


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[InputCache]:
    cache = InputCache(tmp_path / "cache", 64 * MiB)
    yield cache
    _unmount_all(tmp_path)


def _unmount_all(root: Path) -> None:
    """The cache keeps its entries mounted for later workers: the tests unmount theirs."""
    import subprocess

    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo if line.split()[4].startswith(prefix)]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def add(cache: InputCache, source: str, data: bytes, cap: int = 32 * MiB) -> Path:
    staged = cache.stage(cap, 100)
    staged.path.write_bytes(data)
    held = cache.commit(source, staged, len(data), 1)
    assert held is not None
    cache.release(held)
    return held.path


def test_a_committed_input_is_found_again_and_is_read_only_even_to_root(
        cache: InputCache) -> None:
    path = add(cache, "ipfs://bafyA", b"original")
    held = cache.acquire("ipfs://bafyA")
    assert held is not None and held.path == path and held.bytes == 8
    assert path.read_bytes() == b"original"
    for attempt in (lambda: path.write_bytes(b"changed"), path.unlink,
                    lambda: (path.parent / "new").write_text("x"), lambda: path.chmod(0o777)):
        with pytest.raises(OSError) as caught:
            attempt()
        assert caught.value.errno == errno.EROFS
    assert path.read_bytes() == b"original"
    cache.release(held)
    assert cache.acquire("ipfs://bafyB") is None


def test_eviction_keeps_the_size_bound_least_recently_used_first(cache: InputCache) -> None:
    data = os.urandom(24 * MiB)
    for name in "ABC":
        add(cache, f"ipfs://{name}", data)
        assert cache.total_bytes() <= cache.max_bytes
    assert cache.acquire("ipfs://A") is None  # the oldest went to admit C
    held = cache.acquire("ipfs://B")  # B is now the most recently used
    assert held is not None
    cache.release(held)
    add(cache, "ipfs://D", data)
    assert cache.acquire("ipfs://C") is None and cache.total_bytes() <= cache.max_bytes
    for kept in "BD":
        held = cache.acquire(f"ipfs://{kept}")
        assert held is not None
        cache.release(held)


def test_an_entry_in_use_is_never_evicted_and_an_input_larger_than_the_cache_is_refused(
        cache: InputCache) -> None:
    data = os.urandom(40 * MiB)
    add(cache, "ipfs://A", data)
    held = cache.acquire("ipfs://A")
    assert held is not None
    staged = cache.stage(64 * MiB, 100)
    staged.path.write_bytes(data)
    assert cache.commit("ipfs://B", staged, len(data), 1) is None  # no room: A is in use
    cache.discard(staged)
    assert held.path.read_bytes() == data
    cache.release(held)
    huge = cache.stage(128 * MiB, 100)
    huge.path.write_bytes(os.urandom(70 * MiB))
    assert cache.commit("ipfs://H", huge, 70 * MiB, 1) is None
    cache.discard(huge)
    assert cache.acquire("ipfs://A") is not None  # still there


def _lease_and_die(directory: str) -> None:
    held = InputCache(Path(directory), 64 * MiB).acquire("ipfs://A")
    assert held is not None
    os._exit(0)  # a worker killed mid-job: its lease stays in the index


def test_a_lease_of_a_process_that_died_does_not_pin_the_entry(
        cache: InputCache, tmp_path: Path) -> None:
    add(cache, "ipfs://A", os.urandom(40 * MiB))
    child = multiprocessing.get_context("fork").Process(target=_lease_and_die,
                                                        args=(str(tmp_path / "cache"),))
    child.start()
    child.join()
    add(cache, "ipfs://B", os.urandom(40 * MiB))  # evicts A: its only lease is dead
    assert cache.acquire("ipfs://A") is None


def _hammer(directory: str, worker: int) -> None:
    cache = InputCache(Path(directory), 64 * MiB)
    for round_ in range(6):
        source = f"ipfs://{(worker + round_) % 5}"
        held = cache.acquire(source)
        if held is None:
            staged = cache.stage(32 * MiB, 100)
            staged.path.write_bytes(source.encode() * (3 * MiB // len(source)))
            held = cache.commit(source, staged, 0, 1)
            if held is None:
                cache.discard(staged)
                continue
        assert held.path.read_bytes().startswith(source.encode())
        cache.release(held)


def test_concurrent_workers_keep_the_index_consistent(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    cache = InputCache(directory, 64 * MiB)
    try:
        procs = [multiprocessing.get_context("fork").Process(target=_hammer,
                                                             args=(str(directory), w))
                 for w in range(4)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout=120)
            assert proc.exitcode == 0
        assert cache.total_bytes() <= cache.max_bytes
        homes = {p.name for p in directory.glob("e-*")}
        assert cache.clean() == 0 and {p.name for p in directory.glob("e-*")} == homes
    finally:
        _unmount_all(tmp_path)


# -- the runner ----------------------------------------------------------------------------------
SOURCE = "ipfs://bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
DATASET = os.urandom(5 * MiB)  # over the smallest `resources.disk` (4Mi)


class CountingIpfs:
    """An `ipfs` provider serving fixed bytes per CID, counting fetches."""

    def __init__(self, content: dict[str, bytes]) -> None:
        self.content = content
        self.fetches = 0

    def content_id(self, source: str) -> str:
        return source

    def fetch(self, source: str, destination: Path) -> str:
        self.fetches += 1
        destination.write_bytes(self.content[source])
        return source


class TamperingEngine:
    """Tries to change each read-only input, and records what it read."""

    def __init__(self) -> None:
        self.read: list[bytes] = []
        self.errors: list[int] = []

    def prepare(self, spec: object, job_dir: Path) -> str:
        return "sha256:fake"

    def run(self, request: RunRequest) -> RunOutcome:
        request.stdout.write_text("")
        request.stderr.write_text("")
        for mount in request.mounts:
            if mount.read_only:
                self.read.append(mount.host.read_bytes())
                host = mount.host
                for attempt in (functools.partial(host.write_bytes, b"tampered"), host.unlink):
                    try:
                        attempt()
                    except OSError as exc:
                        self.errors.append(exc.errno or 0)
        return RunOutcome(exit_code=0)


def test_a_repeat_job_reads_the_cached_input_and_cannot_change_it(tmp_path: Path) -> None:
    ipfs = CountingIpfs({SOURCE: DATASET})
    engine = TamperingEngine()
    runner = JobRunner({"docker": engine}, StorageRegistry({"ipfs": ipfs}), FakePublisher(),
                       NodePolicy("node-a", Capacity(cpus=4, memory=8 * 1024**3)),
                       tmp_path / "work", input_cache=InputCache(tmp_path / "cache", 64 * MiB))
    spec = json.dumps({"image": "cod/busybox", "cache": False,
                       "inputs": [{"source": SOURCE, "target": "/inputs/d"}]})
    try:
        for key in ("job-1", "job-2", "job-3"):
            outcome = runner.run(key, spec)
            assert outcome.status == "completed", outcome
        assert ipfs.fetches == 1
        assert engine.read == [DATASET] * 3
        assert engine.errors == [errno.EROFS] * 6
        small = json.dumps({"image": "cod/busybox", "cache": False, "resources": {"disk": "4Mi"},
                            "inputs": [{"source": SOURCE, "target": "/inputs/d"}]})
        outcome = runner.run("job-4", small)  # a hit still counts against the job's own cap
        assert outcome.status == "failed" and "left for the job's inputs" in (outcome.reason or "")
    finally:
        _unmount_all(tmp_path)


def test_entries_unmounted_by_a_worker_restart_are_remounted_read_only(tmp_path: Path) -> None:
    from executor.volumes import INPUT_CACHE, clean_work_dir

    try:
        path = add(InputCache(tmp_path / INPUT_CACHE, 64 * MiB), "ipfs://A", b"kept")
        (tmp_path / "job-1").mkdir()
        assert clean_work_dir(tmp_path) == 1  # what a worker's start does to its work directory
        assert not path.exists() and (tmp_path / INPUT_CACHE).is_dir()
        held = InputCache(tmp_path / INPUT_CACHE, 64 * MiB).acquire("ipfs://A")
        assert held is not None and held.path.read_bytes() == b"kept"
        with pytest.raises(OSError) as caught:
            held.path.write_bytes(b"changed")
        assert caught.value.errno == errno.EROFS
    finally:
        _unmount_all(tmp_path)
