"""Input stage of a job over a dataset its node holds (pinned in its Kubo), with and without the
node's input cache, and the result volume's setup and teardown, made per job or pooled.

The input stage is the runner's `_fetch` (locality probe, fetch or cache lookup, mounts), timed
around the real runner running a real container: without the cache every job copies the dataset
out of Kubo; with it the first job fetches it into the cache and every later job mounts the cached
copy read-only. The volume figures time `ResultVolume` (mkfs, mount, umount) against the pool's
acquire and release (wipe and emptiness checks) for the same cap.

    .venv/bin/python -m bench.input_cache_bench --size-mb 1000 --runs 5

Starts its own Docker/Kubo/Redis (`DevStack` without a chain); prints medians and the command.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.stats import median
from devstack.images import BUSYBOX_IMAGE
from devstack.stack import DevStack
from executor.config import WorkerSettings
from executor.runner import JobRunner
from executor.tasks import build_runner
from executor.volume_pool import VolumePool
from executor.volumes import INPUT_CACHE, ResultVolume, clean_work_dir, result_volume_size
from protocol.ipfs import KuboClient
from protocol.spec import InputSource, JobSpec, parse_size
from protocol.tree import remove

MB = 1_000_000


def timed_fetch(runner: JobRunner) -> list[float]:
    """Record how long each job's input stage takes (the runner's own `_fetch`)."""
    times: list[float] = []
    fetch = runner._fetch

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        try:
            return fetch(*args, **kwargs)
        finally:
            times.append(time.monotonic() - start)

    runner._fetch = wrapper  # type: ignore[method-assign]
    return times


def input_stage(settings: WorkerSettings, spec: JobSpec, runs: int, tag: str) -> list[float]:
    runner = build_runner(settings)
    times = timed_fetch(runner)
    try:
        for index in range(runs):
            outcome = runner.run(f"bench-cache:{tag}:{index}", spec.to_json())
            assert outcome.status == "completed" and outcome.exit_code == 0, outcome
    finally:
        runner.close()
    return times


def volume_setup(work: Path, cap: int, runs: int) -> dict[str, float]:
    room = 2 * parse_size("10Mi")

    def per_job(index: int) -> None:
        job_dir = work / f"vol-{index}"
        job_dir.mkdir(parents=True)
        volume = ResultVolume(job_dir, cap, room)
        volume.close()
        remove(job_dir)

    pool = VolumePool(work / "pool")

    def pooled(_index: int) -> None:
        volume = pool.acquire(result_volume_size(cap, room))
        assert volume is not None
        (volume.path / "out").write_bytes(b"x" * 4096)  # something to wipe
        pool.release(volume)

    def sample(step: Callable[[int], None]) -> float:
        times = []
        for index in range(runs):
            start = time.monotonic()
            step(index)
            times.append(time.monotonic() - start)
        return median(times[1:] if runs > 1 else times)  # the pool's first is a plain mkfs

    try:
        return {"per_job_s": sample(per_job), "pooled_s": sample(pooled)}
    finally:
        pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--state-dir", type=Path, default=Path("bench/out/input-cache"))
    args = parser.parse_args()
    state = args.state_dir.resolve()
    stack = DevStack(state, with_chain=False, with_bridge=False, with_worker=False,
                     preferred_ports=False)
    stack.start()
    try:
        kubo = KuboClient(stack.env["COD_IPFS_API"], timeout=3600)
        with tempfile.NamedTemporaryFile(prefix="cod-bench-") as data:
            for _ in range(args.size_mb):
                data.write(os.urandom(MB))
            data.flush()
            cid = kubo.add_path(Path(data.name))  # pinned: the node holds it
        spec = JobSpec(image=BUSYBOX_IMAGE, entrypoint=["sh", "-c", "wc -c < /inputs/in"],
                       cache=False, timeout=600,
                       inputs=[InputSource(source=f"ipfs://{cid}", target="/inputs/in")])

        def settings(name: str, **fields: Any) -> WorkerSettings:
            return WorkerSettings(broker_url=stack.env["COD_BROKER_URL"],
                                  ipfs_api=stack.env["COD_IPFS_API"], node_id="bench-cache",
                                  work_dir=state / name, **fields)

        print(f"dataset {args.size_mb} MB pinned on the node, {args.runs} jobs each:", flush=True)
        without = input_stage(settings("work-nocache", input_cache_size="0",
                                       result_volume_pool=0), spec, args.runs, "off")
        print(f"  input stage, no cache: median {median(without):.3f} s "
              f"(each: {', '.join(f'{t:.3f}' for t in without)})", flush=True)
        cached = input_stage(settings("work-cache"), spec, args.runs, "on")
        print(f"  input stage, cache: first {cached[0]:.3f} s, repeat median "
              f"{median(cached[1:]):.3f} s (each: {', '.join(f'{t:.3f}' for t in cached)})",
              flush=True)
        volumes = volume_setup(state / "volumes", parse_size("10Gi"), max(args.runs, 10))
        print(f"  result volume (10Gi cap) setup+teardown: per job "
              f"{volumes['per_job_s'] * 1000:.1f} ms, pooled {volumes['pooled_s'] * 1000:.1f} ms")
        kubo.unpin(cid)
    finally:
        for name in ("work-nocache", "work-cache", "volumes"):
            clean_work_dir(state / name)  # unmounts the cache's entries too
        remove(state / "work-cache" / INPUT_CACHE)  # the dataset's cached copy
        stack.stop()
    print(f"command: .venv/bin/python -m bench.input_cache_bench --size-mb {args.size_mb} "
          f"--runs {args.runs}", file=sys.stdout)


if __name__ == "__main__":
    main()
