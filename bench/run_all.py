"""Every benchmark of issue #7, side by side in one run; writes bench/results/report.{md,json}.

    .venv/bin/python -m bench.run_all            # the full run (≈ 20 min, plus ≈ 27 min of bridge bench)
    .venv/bin/python -m bench.run_all --quick    # a smoke run (a few jobs, small data)

Starts its own stack (`DevStack`: anvil with 1 s blocks, Kubo, Redis, Docker, the bridge, workers),
then the bridge-scaling bench on an anvil of its own. Medians and ratios throughout: the machine is
shared and noisy, so every comparison is measured in the same run, one side right after the other.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import bridge_bench, cli_bench
from bench.burst import burst
from bench.data_scaling import data_scaling
from bench.e2e import Bench, locality, overhead, throughput
from bench.report import render
from devstack.stack import DevStack

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Plan:
    runs: int  # jobs per overhead measurement
    parallelisms: tuple[int, ...]
    window_s: float  # throughput window (after the warm-up)
    warmup_s: float
    data_sizes: dict[int, int]  # MB → runs
    locality_mb: int
    bridge: tuple[int, int, int]  # requests, blocks, fulfilments


FULL = Plan(runs=30, parallelisms=(1, 2, 4), window_s=120, warmup_s=15,
            data_sizes={1: 5, 100: 3, 1000: 1}, locality_mb=1000, bridge=(10_000, 50_000, 500))
QUICK = Plan(runs=4, parallelisms=(1, 2), window_s=15, warmup_s=6, data_sizes={1: 1, 20: 1},
             locality_mb=20, bridge=(500, 2000, 50))


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), "?")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    docker = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                            capture_output=True, text=True).stdout.strip()
    ipfs = subprocess.run(["ipfs", "version", "--number"], capture_output=True,
                          text=True).stdout.strip()
    return {"cpu": cpu, "nproc": subprocess.check_output(["nproc"], text=True).strip(),
            "memory": f"{mem_kb / 1024 / 1024:.1f} GiB", "kernel": platform.release(),
            "python": platform.python_version(), "docker": docker, "kubo": ipfs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--state-dir", type=Path, default=Path("bench/out/stack"))
    parser.add_argument("--skip", action="append", default=[],
                        choices=["overhead", "throughput", "burst", "cli", "data", "locality",
                                 "bridge"])
    parser.add_argument("--merge", action="store_true",
                        help="keep the phases of the last report.json that this run skips")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    command = ".venv/bin/python -m bench.run_all" + (" --quick" if args.quick else "")
    report: dict[str, Any] = {"command": command, "machine": machine(), "plan": plan.__dict__,
                              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if args.merge and (RESULTS / "report.json").exists():
        earlier = json.loads((RESULTS / "report.json").read_text())
        kept = {k: v for k, v in earlier.items()
                if k in ("overhead", "throughput", "burst", "cli", "data", "locality")
                and k in args.skip}
        report.update(kept)
        report["merged_from"] = {k: earlier.get("started") for k in kept}
    t0 = time.monotonic()
    stack = DevStack(args.state_dir, block_time=1, preferred_ports=False)
    stack.start()
    try:
        bench = Bench(stack)
        if "overhead" not in args.skip:
            report["overhead"] = overhead(bench, plan.runs)
            _checkpoint(report)
        if "throughput" not in args.skip:
            report["throughput"] = throughput(bench, plan.parallelisms, plan.window_s,
                                              plan.warmup_s)
            _checkpoint(report)
        if "burst" not in args.skip:
            report["burst"] = burst(bench, rounds=1 if args.quick else 3)
            _checkpoint(report)
        if "cli" not in args.skip:
            report["cli"] = cli_bench.run(runs=5 if args.quick else 21, with_concurrent=True,
                                          stack_env=stack.env)
            _checkpoint(report)
        if "data" not in args.skip:
            report["data"] = data_scaling(stack.env["COD_IPFS_API"], stack.env["COD_BROKER_URL"],
                                          stack.state_dir / "work" / "bench-data",
                                          plan.data_sizes)
            _checkpoint(report)
        if "locality" not in args.skip:
            report["locality"] = locality(bench, plan.locality_mb)
            _checkpoint(report)
    finally:
        stack.stop()
    if "bridge" not in args.skip:
        requests, blocks, fulfil = plan.bridge
        report["bridge"] = bridge_bench.run(requests, blocks, fulfil)
        bridge_bench.write(report["bridge"])
    elif (RESULTS / "bridge.json").exists():  # measured by its own command: quote that run
        report["bridge"] = {**json.loads((RESULTS / "bridge.json").read_text()),
                            "separate_run": True}
    report["elapsed_s"] = round(time.monotonic() - t0, 1)
    _checkpoint(report)
    text = render(report)
    (RESULTS / "report.md").write_text(text)
    print(text)


def _checkpoint(report: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
