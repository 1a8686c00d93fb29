"""Where the listener's catch-up spends its time: cProfile of one `Listener.poll` over a backlog.

    .venv/bin/python -m bench.listener_profile [--requests 5000] [--blocks 10000] [--log-chunk 2000]
        [--top 25]

Against a real anvil (started here, as `bench.bridge_bench` starts it): the same backlog as
`bench.bridge_bench` (`make_backlog`), read by a fresh listener into a fresh SQLite ledger, once
without the profiler (events/s) and once under it (the top entries by cumulative and own time).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import tempfile
import time
from pathlib import Path

from bench.bridge_bench import ANVIL_ARGS, make_backlog
from bridge.ledger import Ledger
from bridge.listener import Listener
from tests.services import anvil_chain


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--blocks", type=int, default=10_000)
    parser.add_argument("--log-chunk", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cod-listener-profile-"))
    try:
        with anvil_chain(min_fee=10**12, rpc_timeout=600, extra_args=ANVIL_ARGS) as chain:
            make_backlog(chain.w3, chain.owner, chain.manager, args.requests, args.blocks)
            for run, profiler in (("plain", None), ("profiled", cProfile.Profile())):
                ledger = Ledger(f"sqlite:///{work / f'{run}.sqlite'}")
                listener = Listener(chain.w3, chain.manager, ledger, 0, 0, args.log_chunk)
                started = time.monotonic()
                if profiler is not None:
                    profiler.enable()
                seen = listener.poll()
                if profiler is not None:
                    profiler.disable()
                took = time.monotonic() - started
                print(f"{run}: {seen} events in {took:.2f} s: {seen / took:.1f} events/s")
                if profiler is not None:
                    stats = pstats.Stats(profiler)
                    stats.sort_stats("cumulative").print_stats(args.top)
                    stats.sort_stats("tottime").print_stats(args.top)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"Command: .venv/bin/python -m bench.listener_profile --requests {args.requests} "
          f"--blocks {args.blocks} --log-chunk {args.log_chunk} --top {args.top}")


if __name__ == "__main__":
    main()
