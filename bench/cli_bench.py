"""`cod` as a shell user runs it: start-up of whole processes, and N `cod docker run` at once.

    .venv/bin/python -m bench.cli_bench                      # start-up only (starts no service)
    .venv/bin/python -m bench.cli_bench --concurrent         # also 20 runs at once, on its own stack
    .venv/bin/python -m bench.cli_bench --runs 21 --processes 20 --concurrent
    .venv/bin/python -m bench.cli_bench --cod "env PYTHONPATH=/tmp/old .venv/bin/python -P -m cod.cli"

Start-up is the median wall time of `cod --help` and `cod docker run --dry-run …` (each a fresh
process, stdout to a pipe, as in a script). The concurrent part starts a `DevStack` (anvil with
1 s blocks, Kubo, Redis, Docker, the bridge, a worker) and launches N `cod docker run --id-only`
from one key at the same instant, as `for i in …; do cod docker run … & done` does: it counts the
requests accepted (a job id printed) and completed (exit 0), and the time until the last ended.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stats import median

COD = [str(Path(sys.executable).parent / "cod")]
DRY_RUN = ("docker", "run", "--dry-run", "busybox:1.36", "--", "echo", "hi")
CLI_BENCH_KEY_INDEX = 4  # an anvil dev account of its own


def startup(args: tuple[str, ...], runs: int, cod: list[str] = COD) -> list[float]:
    """Wall seconds of `cod ARGS`, one fresh process per run (it must exit 0)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([*cod, *args], check=True, capture_output=True, timeout=120)
        times.append(time.perf_counter() - start)
    return times


def concurrent(env: dict[str, str], processes: int, image: str, cod: list[str] = COD
               ) -> dict[str, Any]:
    """`processes` × `cod docker run --id-only` started at once from the key in `env`."""
    full = {**os.environ, **env}
    start = time.perf_counter()
    started = [subprocess.Popen([*cod, "docker", "run", "--id-only", "--wait-timeout", "600",
                                 image, "--", "echo", f"job {n}"],
                                env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for n in range(processes)]
    ended = [(p.wait(timeout=900), *p.communicate()) for p in started]
    elapsed = time.perf_counter() - start
    accepted = sum(1 for _, out, _ in ended if out.strip().split("\n")[0].isdigit())
    errors = sorted({err.strip().splitlines()[-1] for code, _, err in ended
                     if code != 0 and err.strip()})
    return {"processes": processes, "accepted": accepted,
            "completed": sum(1 for code, _, _ in ended if code == 0),
            "elapsed_s": round(elapsed, 2), "errors": errors}


def run(runs: int = 11, processes: int = 20, with_concurrent: bool = False,
        stack_env: dict[str, str] | None = None, cod: list[str] = COD) -> dict[str, Any]:
    """The figures as a dict (for `bench.run_all`); `stack_env` is a running stack's `COD_*`."""
    report: dict[str, Any] = {}
    for name, args in (("help", ("--help",)), ("dry_run", DRY_RUN)):
        times = startup(args, runs, cod)
        report[name] = {"median_s": round(median(times), 3), "min_s": round(min(times), 3),
                        "runs": runs}
    if with_concurrent:
        from devstack.images import BUSYBOX_IMAGE
        from devstack.stack import DevStack, dev_key

        key = {"COD_PRIVATE_KEY": dev_key(CLI_BENCH_KEY_INDEX)}
        if stack_env is not None:
            report["concurrent"] = concurrent({**stack_env, **key}, processes, BUSYBOX_IMAGE, cod)
        else:
            with tempfile.TemporaryDirectory(prefix="cod-cli-bench-") as state:
                stack = DevStack(Path(state), block_time=1, preferred_ports=False)
                stack.start()
                try:
                    report["concurrent"] = concurrent({**stack.env, **key}, processes,
                                                      BUSYBOX_IMAGE, cod)
                finally:
                    stack.stop()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11, help="processes per start-up figure")
    parser.add_argument("--processes", type=int, default=20, help="cod docker run at once")
    parser.add_argument("--concurrent", action="store_true", help="also run N at once (a stack)")
    parser.add_argument("--cod", help="the command to run instead of this venv's cod (e.g. another "
                        "checkout's: \"env PYTHONPATH=DIR python -P -m cod.cli\")")
    args = parser.parse_args()
    report = run(args.runs, args.processes, args.concurrent,
                 cod=args.cod.split() if args.cod else COD)
    print(f"cod --help, whole process:           median {report['help']['median_s']:.3f} s "
          f"(min {report['help']['min_s']:.3f}, {args.runs} runs)")
    print(f"cod docker run --dry-run, whole:     median {report['dry_run']['median_s']:.3f} s "
          f"(min {report['dry_run']['min_s']:.3f}, {args.runs} runs)")
    if "concurrent" in report:
        c = report["concurrent"]
        print(f"{c['processes']} cod docker run at once, one key: {c['accepted']} accepted, "
              f"{c['completed']} completed, all ended in {c['elapsed_s']:.1f} s")
        for line in c["errors"]:
            print(f"  error: {line}")
    print(json.dumps(report))
    command = f".venv/bin/python -m bench.cli_bench --runs {args.runs}"
    if args.cod:
        command += f' --cod "{args.cod}"'
    if args.concurrent:
        command += f" --processes {args.processes} --concurrent"
    print(f"reproduce: {command}")


if __name__ == "__main__":
    main()
