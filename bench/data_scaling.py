"""Data scaling: a job reading an N MB input and writing an N MB output, through the executor's
runner (in a child process of its own, so its peak memory is the job's), side by side with
`ipfs get` + `docker run` + `ipfs add` alone. `bench.run_all` calls `data_scaling`; the child is

    .venv/bin/python -m bench.data_scaling --cid CID --size-mb N --ipfs-api URL --broker-url URL \
        --work-dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stats import median
from devstack.images import BUSYBOX_IMAGE
from protocol.ipfs import KuboClient
from protocol.spec import InputSource, JobSpec

MB = 1_000_000


def script(size_mb: int) -> str:
    return (f"wc -c < /inputs/in > /outputs/in-size; "
            f"head -c {size_mb * MB} /dev/urandom > /outputs/out.bin")


def spec_for(cid: str, size_mb: int) -> JobSpec:
    return JobSpec(image=BUSYBOX_IMAGE, entrypoint=["sh", "-c", script(size_mb)], cache=False,
                   inputs=[InputSource(source=f"ipfs://{cid}", target="/inputs/in")],
                   timeout=3600)


def cod_once(cid: str, size_mb: int, ipfs_api: str, broker_url: str, work_dir: Path
             ) -> dict[str, float]:
    """Run the job through the runner in a fresh child process; its time and peak memory."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.data_scaling", "--cid", cid, "--size-mb", str(size_mb),
         "--ipfs-api", ipfs_api, "--broker-url", broker_url, "--work-dir", str(work_dir)],
        check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def baseline_once(cid: str, size_mb: int, ipfs_api: str) -> float:
    """`ipfs get` the input, `docker run` the same script, `ipfs add` the output directory."""
    ipfs = shutil.which("ipfs") or "ipfs"
    api = "/ip4/127.0.0.1/tcp/" + ipfs_api.rsplit(":", 1)[1]
    with tempfile.TemporaryDirectory(prefix="cod-bench-") as tmp:
        out = Path(tmp) / "outputs"
        out.mkdir()
        start = time.monotonic()
        subprocess.run([ipfs, "--api", api, "get", "-o", f"{tmp}/in", cid], check=True,
                       capture_output=True)
        subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{out}:/outputs",
                        "-v", f"{tmp}/in:/inputs/in:ro", BUSYBOX_IMAGE, "sh", "-c",
                        script(size_mb)], check=True, capture_output=True)
        subprocess.run([ipfs, "--api", api, "add", "-r", "-Q", "--pin", "--cid-version", "1",
                        str(out)], check=True, capture_output=True)
        return time.monotonic() - start


def data_scaling(ipfs_api: str, broker_url: str, work_dir: Path, sizes: dict[int, int]
                 ) -> list[dict[str, Any]]:
    """`sizes`: size in MB → runs. The input is a file of random bytes added to Kubo first."""
    kubo = KuboClient(ipfs_api, timeout=3600)
    rows = []
    for size_mb, runs in sizes.items():
        with tempfile.NamedTemporaryFile(prefix="cod-bench-") as data:
            for _ in range(size_mb):
                data.write(os.urandom(MB))
            data.flush()
            cid = kubo.add_path(Path(data.name))
        ours, theirs = [], []
        for _ in range(runs):
            ours.append(cod_once(cid, size_mb, ipfs_api, broker_url, work_dir))
            theirs.append(baseline_once(cid, size_mb, ipfs_api))
        row = {"size_mb": size_mb, "runs": runs,
               "cod_s": median(o["duration_s"] for o in ours),
               "baseline_s": median(theirs),
               "worker_rss_before_mb": median(o["rss_before_mb"] for o in ours),
               "worker_peak_rss_mb": max(o["peak_rss_mb"] for o in ours)}
        row["ratio"] = row["cod_s"] / row["baseline_s"]
        print(f"data {size_mb} MB: {row}", flush=True)
        rows.append(row)
        kubo.unpin(cid)
    return rows


def _child() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cid", required=True)
    parser.add_argument("--size-mb", type=int, required=True)
    parser.add_argument("--ipfs-api", required=True)
    parser.add_argument("--broker-url", required=True)
    parser.add_argument("--work-dir", type=Path, required=True)
    args = parser.parse_args()
    from executor.config import WorkerSettings
    from executor.tasks import build_runner

    runner = build_runner(WorkerSettings(broker_url=args.broker_url, ipfs_api=args.ipfs_api,
                                         node_id="bench-data", work_dir=args.work_dir))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.monotonic()
    outcome = runner.run(f"bench-data:{os.getpid()}", spec_for(args.cid, args.size_mb).to_json())
    duration = time.monotonic() - start
    assert outcome.status == "completed" and outcome.exit_code == 0, outcome
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"duration_s": duration, "rss_before_mb": rss_before, "peak_rss_mb": peak}))


if __name__ == "__main__":
    _child()
