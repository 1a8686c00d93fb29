"""The pool of ready result volumes (executor.volume_pool), on real loop mounts (root): a volume
given back is wiped and checked empty before the next job gets it; one that is not is destroyed;
the pool is bounded and leaves nothing mounted when closed."""

from __future__ import annotations

import os
from pathlib import Path

from executor.volume_pool import WIPE_MAX_INODES, VolumePool

MiB = 1024 * 1024
SIZE = 32 * MiB


def mounted_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mountinfo") as mountinfo:
        return [line.split()[4] for line in mountinfo if line.split()[4].startswith(prefix)]


def test_a_volume_given_back_is_reused_empty(tmp_path: Path) -> None:
    pool = VolumePool(tmp_path / "pool")
    try:
        first = pool.acquire(SIZE)
        assert first is not None and first.is_empty()
        (first.path / "out").mkdir()
        (first.path / "out" / "secret").write_bytes(os.urandom(MiB))
        (first.mountpoint / "beside").write_text("x")  # outside the result directory too
        pool.release(first)
        again = pool.acquire(SIZE)
        assert again is first  # no mkfs
        assert os.listdir(again.path) == [] and again.is_empty()
        second = pool.acquire(SIZE)
        assert second is not None and second is not first  # in use: another is made
        pool.release(second)
        pool.release(again)
    finally:
        pool.close()
    assert mounted_under(tmp_path) == [] and not (tmp_path / "pool").exists()


def test_a_volume_changed_after_it_was_given_back_is_destroyed_not_reused(tmp_path: Path) -> None:
    pool = VolumePool(tmp_path / "pool")
    try:
        volume = pool.acquire(SIZE)
        assert volume is not None
        pool.release(volume)
        (volume.path / "late").write_text("a straggler's bytes")
        other = pool.acquire(SIZE)
        assert other is not None and other is not volume and other.is_empty()
        assert str(volume.mountpoint) not in mounted_under(tmp_path)
        pool.release(other)
    finally:
        pool.close()


def test_a_volume_with_many_files_is_destroyed_and_sizes_do_not_mix(tmp_path: Path) -> None:
    pool = VolumePool(tmp_path / "pool", max_idle=2)
    try:
        volume = pool.acquire(SIZE)
        assert volume is not None
        for index in range(WIPE_MAX_INODES + 10):
            (volume.path / str(index)).touch()
        pool.release(volume)
        assert pool.idle == 0
        a, b, c = (pool.acquire(SIZE + i * MiB) for i in range(3))
        for volume in (a, b, c):
            assert volume is not None
            pool.release(volume)
        assert pool.idle == 2  # bounded: the oldest was destroyed
        bigger = pool.acquire(SIZE + 2 * MiB)
        assert bigger is c and c is not None and c.size == SIZE + 2 * MiB
        pool.release(c)
    finally:
        pool.close()
    assert mounted_under(tmp_path) == []


def test_the_runner_hands_the_next_job_an_empty_pooled_volume(tmp_path: Path) -> None:
    from executor.runner import JobRunner, NodePolicy
    from executor.storage import StorageRegistry
    from protocol.capacity import Capacity
    from tests.unit.test_registries import FakePublisher
    from tests.unit.test_small_result import WritingEngine, spec_text

    seen: list[list[str]] = []

    def write(out: Path) -> None:
        seen.append(sorted(os.listdir(out)))
        (out / "secret").write_text("job's own bytes")

    publisher, pool = FakePublisher(), VolumePool(tmp_path / "pool")
    runner = JobRunner({"docker": WritingEngine(write)}, StorageRegistry({}), publisher,
                       NodePolicy("node-a", Capacity(cpus=4, memory=8 * 1024**3)),
                       tmp_path / "work", volume_pool=pool)
    try:
        for key in ("job-1", "job-2"):
            assert runner.run(key, spec_text(cache=False)).status == "completed"
        assert seen == [[], []] and pool.idle == 1
        assert [p["outputs/secret"] for p in publisher.published] == ["job's own bytes"] * 2
        assert "exitCode" in publisher.published[1] and len(publisher.published[1]) == 4
    finally:
        runner.close()
    assert mounted_under(tmp_path) == []
