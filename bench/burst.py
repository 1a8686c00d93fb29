"""20 trivial jobs submitted at once, until every one is settled, beside 20 bare `docker run`s
four at a time (the same containers, the same parallelism): issue 14's burst row, where
Bacalhau's devstack took 5.4 s here.

    .venv/bin/python -m bench.burst            # on a stack of its own (bench/out/burst)

`bench.run_all` calls `burst(bench)` on its stack. The cod side sends the 20 requests from one key
without waiting for receipts (as a loop of `cod docker run … &` does, with the nonces shared), and
counts from the first send to the last job completed in the bridge's ledger.
"""

from __future__ import annotations

import argparse
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.e2e import Bench
from bench.harness import docker_run
from bench.stats import median
from bridge.ledger import JobState
from devstack.images import BUSYBOX_IMAGE
from devstack.stack import DevStack
from protocol.spec import JobSpec

JOBS = 20
PARALLEL = 4


def unique_spec(n: int) -> JobSpec:
    """A trivial job with unique arguments, so nothing is cached."""
    return JobSpec(image=BUSYBOX_IMAGE, entrypoint=["sh", "-c", f"echo burst-{n}-{uuid.uuid4()}"],
                   cache=False, timeout=60)


def docker_burst(jobs: int = JOBS, parallel: int = PARALLEL) -> float:
    start = time.monotonic()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda n: docker_run(BUSYBOX_IMAGE, f"echo burst-{n}-{uuid.uuid4()}"),
                      range(jobs)))
    return time.monotonic() - start


def cod_burst(bench: Bench, jobs: int = JOBS, timeout: float = 300) -> float:
    start = time.monotonic()
    sent = [bench.requester.send(unique_spec(n)) for n in range(jobs)]
    for tx in sent:
        job = bench.reader.wait_state(tx, timeout=timeout)
        assert job.state == JobState.COMPLETED, (job.job_id, job.state, job.reason)
    return time.monotonic() - start


def burst(bench: Bench, rounds: int = 3) -> dict[str, Any]:
    """`rounds` of each side, interleaved; medians and their ratio."""
    bench.use_workers(("burst", PARALLEL, False))
    cod_burst(bench, jobs=PARALLEL)  # warm-up: the image, the worker's pool, the bridge's caches
    plain: list[float] = []
    cod: list[float] = []
    for n in range(rounds):
        plain.append(docker_burst())
        cod.append(cod_burst(bench))
        print(f"burst round {n + 1}: docker run x{PARALLEL} {plain[-1]:.2f} s, "
              f"cod {cod[-1]:.2f} s", flush=True)
    return {"jobs": JOBS, "parallel": PARALLEL, "rounds": rounds, "docker_run_s": median(plain),
            "cod_s": median(cod), "ratio": median(cod) / median(plain), "docker_runs": plain,
            "cod_runs": cod}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--state-dir", type=Path, default=Path("bench/out/burst"))
    args = parser.parse_args()
    stack = DevStack(args.state_dir, block_time=1, preferred_ports=False)
    stack.start()
    try:
        result = burst(Bench(stack), args.rounds)
    finally:
        stack.stop()
    print(f"{JOBS} jobs at once until settled (medians of {args.rounds}): cod {result['cod_s']:.2f} s, "
          f"bare docker run {PARALLEL} at a time {result['docker_run_s']:.2f} s "
          f"(ratio {result['ratio']:.2f})")
    print(f"reproduce: .venv/bin/python -m bench.burst --rounds {args.rounds}")


if __name__ == "__main__":
    main()
