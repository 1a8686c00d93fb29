"""Executor overhead per job, side by side with `ipfs get` + `docker run` + `ipfs add` alone.

For each job the Docker daemon's own `start` and `die` events mark when the container started and
exited; the overhead is the time from the task start to the container start ("before": fetch
inputs, image check, result volume, create) and from the container exit to a CID that is pinned
and stat'ed ("after": logs, size check, add, pin, stat). The baseline does the same work with the
command-line tools and no sandbox or bookkeeping.

    .venv/bin/python -m bench.executor_overhead --runs 7

Starts its own Docker/Kubo/Redis (`DevStack` without a chain); prints medians and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from devstack.images import BUSYBOX_IMAGE
from devstack.stack import DevStack
from executor.config import WorkerSettings
from executor.tasks import build_runner
from protocol.ipfs import KuboClient
from protocol.spec import JobSpec

NODE = "bench-node"
MB = 1000 * 1000


class ContainerEvents:
    """Start/die times (seconds since the epoch) of containers labelled with the bench node."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.times: dict[tuple[str, str], float] = {}
        self._stream = client.events(decode=True, filters={"label": f"cod.node={NODE}"})
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for event in self._stream:
            if event.get("Type") == "container" and event.get("status") in ("start", "die"):
                name = event["Actor"]["Attributes"]["name"]
                self.times[(name, event["status"])] = event["timeNano"] / 1e9

    def wait_for(self, name: str, status: str, timeout: float = 30) -> float:
        deadline = time.monotonic() + timeout
        while (name, status) not in self.times:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {status} event for {name}")
            time.sleep(0.01)
        return self.times[(name, status)]

    def names(self, status: str) -> set[str]:
        return {name for name, s in self.times if s == status}


@dataclass
class Sample:
    before: float
    after: float
    total: float


def run_executor(runner_run: Callable[[str, str], Any], events: ContainerEvents, spec: JobSpec,
                 index: int) -> Sample:
    seen = events.names("start")
    start = time.time()
    outcome = runner_run(f"bench:{index}", spec.to_json())
    end = time.time()
    assert outcome.status == "completed" and outcome.exit_code == 0, outcome
    time.sleep(0.05)
    [name] = events.names("start") - seen
    return Sample(events.wait_for(name, "start") - start, end - events.wait_for(name, "die"),
                  end - start)


def run_baseline(api: str, events: ContainerEvents, script: str, input_cid: str | None,
                 index: int) -> Sample:
    ipfs = shutil.which("ipfs") or "ipfs"
    api_addr = "/ip4/127.0.0.1/tcp/" + api.rsplit(":", 1)[1]
    name = f"bench-baseline-{index}-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="cod-bench-") as tmp:
        out = Path(tmp) / "outputs"
        out.mkdir()
        volumes = ["-v", f"{out}:/outputs"]
        start = time.time()
        if input_cid:
            subprocess.run([ipfs, "--api", api_addr, "get", "-o", f"{tmp}/in", input_cid],
                           check=True, capture_output=True)
            volumes += ["-v", f"{tmp}/in:/inputs/in:ro"]
        subprocess.run(["docker", "run", "--rm", "--name", name, "--label", f"cod.node={NODE}",
                        "--network", "none", *volumes, BUSYBOX_IMAGE, "sh", "-c", script],
                       check=True, capture_output=True)
        subprocess.run([ipfs, "--api", api_addr, "add", "-r", "-Q", "--cid-version", "1",
                        str(out)], check=True, capture_output=True)
        end = time.time()
    return Sample(events.wait_for(name, "start") - start, end - events.wait_for(name, "die"),
                  end - start)


def median(samples: list[Sample], field: str) -> float:
    return float(statistics.median(float(getattr(s, field)) for s in samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--state-dir", type=Path, default=Path("bench/out/stack"))
    args = parser.parse_args()

    stack = DevStack(args.state_dir, with_chain=False, with_bridge=False, with_worker=False,
                     preferred_ports=False)
    stack.start()
    try:
        api = stack.env["COD_IPFS_API"]
        kubo = KuboClient(api)
        settings = WorkerSettings(broker_url=stack.env["COD_BROKER_URL"], ipfs_api=api,
                                  node_id=NODE, work_dir=args.state_dir.resolve() / "work")
        runner = build_runner(settings)
        events = ContainerEvents(docker.from_env())
        with tempfile.NamedTemporaryFile() as data:
            data.write(os.urandom(args.size_mb * MB))
            data.flush()
            input_cid = kubo.add_path(Path(data.name))

        trivial = "echo hi > /outputs/hi.txt"
        big = (f"head -c {args.size_mb * MB} /dev/urandom > /outputs/out.bin; "
               "wc -c < /inputs/in > /outputs/in-size")
        cases = {
            "trivial": (JobSpec(image=BUSYBOX_IMAGE, entrypoint=["sh", "-c", trivial],
                                cache=False), trivial, None),
            f"{args.size_mb} MB in + {args.size_mb} MB out": (
                JobSpec(image=BUSYBOX_IMAGE, entrypoint=["sh", "-c", big], cache=False,
                        inputs=[{"source": f"ipfs://{input_cid}", "target": "/inputs/in"}]),  # type: ignore[list-item]
                big, input_cid),
        }
        report: dict[str, Any] = {}
        index = 0
        for label, (spec, script, cid) in cases.items():
            ours, theirs = [], []
            for _ in range(args.runs):
                index += 1
                ours.append(run_executor(runner.run, events, spec, index))
                theirs.append(run_baseline(api, events, script, cid, index))
            report[label] = {
                kind: {f: round(median(samples, f), 3) for f in ("before", "after", "total")}
                for kind, samples in (("cod", ours), ("baseline", theirs))
            }
        print_report(report, args.runs)
        out = Path("bench/out")
        out.mkdir(parents=True, exist_ok=True)
        (out / "executor_overhead.json").write_text(json.dumps(report, indent=2))
    finally:
        stack.stop()


def print_report(report: dict[str, Any], runs: int) -> None:
    print(f"medians of {runs} runs, seconds; before = task start → container start, "
          "after = container exit → CID ready")
    print(f"{'job':<26}{'':>10}{'before':>9}{'after':>9}{'total':>9}")
    for label, kinds in report.items():
        for kind in ("cod", "baseline"):
            m = kinds[kind]
            print(f"{label:<26}{kind:>10}{m['before']:>9.3f}{m['after']:>9.3f}{m['total']:>9.3f}")
        ratio = {f: kinds["cod"][f] / kinds["baseline"][f] if kinds["baseline"][f] else 0.0
                 for f in ("before", "after", "total")}
        print(f"{'':<26}{'ratio':>10}{ratio['before']:>9.2f}{ratio['after']:>9.2f}"
              f"{ratio['total']:>9.2f}")


if __name__ == "__main__":
    main()
