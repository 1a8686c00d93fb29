"""The dispatcher alone: `Dispatcher.dispatch_pending` over a backlog of ledger rows, optionally
profiled; with the in-memory task queue and node board of the unit tests (no services), or with
`--redis`, Celery over a real Redis started here (as `bench.bridge_bench`'s dispatch step, without
building a backlog on anvil first).

    .venv/bin/python -m bench.dispatch_profile [--jobs 5000] [--redis] [--profile] [--top 25]

Prints jobs per wall-clock second and per CPU second of this process (the latter moves less when
the machine is busy with other work).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bridge.dispatcher import BrokerEpoch, Dispatcher
from bridge.ledger import JobState, Ledger, NewJob
from bridge.ports import CeleryTaskQueue, Epoch, NodeBoard, RedisNodeBoard, TaskQueue
from devstack.stack import free_port
from executor.capacity import detect_capacity
from protocol.messaging import make_app
from protocol.nodes import NodeInfo, NodeRegistry
from protocol.queues import queues_for_node
from tests.bridge.fakes import CHAIN, CONTRACT, FakeBoard, FakeEpoch, FakeTasks

SPEC = json.dumps({"image": "cod/busybox:latest", "entrypoint": ["sh", "-c", "echo hi"],
                   "inputs": [{"source": "ipfs://bafkreidovn72i5u5267d2jpcgldmxcrh2a3n7bx5xt4g6cpfjnd45mr7wi",
                               "target": "/inputs/text.txt"}], "timeout": 60})  # bench.bridge_bench's


def backlog(ledger: Ledger, jobs: int) -> None:
    rows = [NewJob(job_id=i, requester="0x" + f"{i % 7:040x}", consumer="0x" + "0" * 40, spec=SPEC,
                   fee_wei=10**15, deadline=2_000_000_000, block_number=i,
                   block_hash=f"0x{i:064x}", tx_hash=f"0x{i:064x}", log_index=0)
            for i in range(1, jobs + 1)]
    for i in range(0, len(rows), 1000):
        part = rows[i:i + 1000]
        ledger.record_block_range(CHAIN, CONTRACT, part, {part[-1].job_id: "0x" + "0" * 64},
                                  part[-1].job_id)


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway Redis with a password, as `bench.bridge_bench` starts it; yields its URL."""
    work = Path(tempfile.mkdtemp(prefix="cod-dispatch-"))
    port, password = free_port(), secrets.token_hex(16)
    config = work / "redis.conf"
    config.touch(mode=0o600)
    config.write_text(f"requirepass {password}\n")
    server = subprocess.Popen([shutil.which("redis-server") or "redis-server", str(config),
                               "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    try:
        registry = NodeRegistry(url)
        deadline = time.monotonic() + 30
        while True:  # until it answers
            try:
                registry._redis.ping()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def run(jobs: int, profile: bool, top: int, redis_url: str | None) -> tuple[float, float]:
    """Jobs dispatched per wall-clock second and per CPU second."""
    capacity = detect_capacity(None, None, None)
    info = NodeInfo("bench-node", queues_for_node(capacity, False), capacity, seen_at=time.time())
    tasks: TaskQueue
    board: NodeBoard
    epoch: Epoch
    if redis_url:
        NodeRegistry(redis_url).beat(info, ttl_s=3600)
        tasks, board, epoch = (CeleryTaskQueue(make_app(redis_url)), RedisNodeBoard(redis_url),
                               BrokerEpoch(redis_url))
    else:
        tasks, board, epoch = FakeTasks(), FakeBoard([info]), FakeEpoch()
    with tempfile.TemporaryDirectory() as work:
        ledger = Ledger(f"sqlite:///{Path(work) / 'ledger.sqlite'}")
        backlog(ledger, jobs)
        dispatcher = Dispatcher(tasks, board, ledger, epoch, CHAIN, CONTRACT)
        profiler = cProfile.Profile() if profile else None
        t0, c0 = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        while dispatcher.dispatch_pending():
            pass
        if profiler:
            profiler.disable()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        assert ledger.count_by_state(CHAIN, CONTRACT) == {JobState.DISPATCHED: jobs}
        if isinstance(tasks, FakeTasks):
            assert len(tasks.sent) == jobs, (len(tasks.sent), jobs)
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)
        return jobs / elapsed, jobs / cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--redis", action="store_true", help="Celery over a real Redis")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    if args.redis:
        with redis_server() as url:
            wall, cpu = run(args.jobs, args.profile, args.top, url)
    else:
        wall, cpu = run(args.jobs, args.profile, args.top, None)
    where = "Celery over Redis" if args.redis else "fake task queue"
    print(f"dispatch ({where}, SQLite ledger): {args.jobs} jobs, {wall:.0f} jobs/s "
          f"({cpu:.0f} per CPU second){' under cProfile' if args.profile else ''}\n"
          f"command: .venv/bin/python -m bench.dispatch_profile --jobs {args.jobs}"
          f"{' --redis' if args.redis else ''}{' --profile' if args.profile else ''}")


if __name__ == "__main__":
    main()
