"""End-to-end benchmarks on a running `DevStack` (anvil with 1 s blocks, the bridge, workers):
overhead per job and its breakdown per stage, throughput against parallel `docker run`s, and a
job over a large dataset with and without locality. `bench.run_all` calls these."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    BlockWatcher,
    ContainerEvents,
    LedgerReader,
    Requester,
    container_name,
    docker_run,
)
from bench.stats import (
    median,
    median_breakdown,
    rate_in_window,
    stage_breakdown,
    timeline_marks,
    worker_log_times,
)
from bridge.ledger import JobState
from bridge.timeline import EventKind
from devstack.images import BUSYBOX_IMAGE
from devstack.stack import DevStack
from executor.config import WorkerSettings
from executor.tasks import build_runner
from protocol.ipfs import KuboClient
from protocol.nodes import DataIndex
from protocol.spec import InputSource, JobSpec

TRIVIAL = "echo hi"
MB = 1_000_000
WORKER_ENV = {"COD_HEARTBEAT_INTERVAL_S": "1", "COD_INPUT_FETCH_TIMEOUT_S": "1800"}


def trivial_spec() -> JobSpec:
    return JobSpec(image=BUSYBOX_IMAGE, entrypoint=["sh", "-c", TRIVIAL], cache=False, timeout=60)


class Bench:
    """The stack plus the instruments every end-to-end measurement shares."""

    def __init__(self, stack: DevStack) -> None:
        self.stack = stack
        self.requester = Requester(stack)
        self.watcher = BlockWatcher(self.requester.w3)
        self.containers = ContainerEvents()
        self.reader = LedgerReader(stack.env["COD_LEDGER_URL"], self.requester.chain_id,
                                   stack.env["COD_CONTRACT"])
        self.workers: list[str] = ["node-1"] if stack.with_worker else []

    def use_workers(self, *specs: tuple[str, int, bool]) -> None:
        """Stop the running workers; start `(node id, concurrency, own Kubo)` ones."""
        for node in self.workers:
            self.stack.stop_process(f"worker-{node}")
        for node, concurrency, own_kubo in specs:
            self.stack.start_worker(node, extra_env=WORKER_ENV, own_kubo=own_kubo,
                                    concurrency=concurrency)
        self.workers = [node for node, _, _ in specs]

    def restart_bridge(self, **env: str) -> None:
        self.stack.stop_process("bridge")
        self.stack.start_bridge(extra_env=env)

    def run_job(self, spec: JobSpec, timeout: float = 600, confirmations: int = 0
                ) -> dict[str, Any]:
        """Request one job and wait for its fulfilment; returns its marks and job fields."""
        sent = time.time()
        tx = self.requester.send(spec)
        job = self.reader.wait_state(tx, timeout=timeout)
        marks = timeline_marks(self.reader.timeline(job))
        marks["sent"] = sent
        request_block = self.requester.block_of(tx)
        for mark, block in (("request_block", request_block),
                            ("confirmed_block", request_block + confirmations),
                            ("fulfil_block", self.requester.block_of(job.submit_tx or tx))):
            seen = self.watcher.wait(block)
            if seen is not None:
                marks[mark] = seen
        node = job.node or ""
        log = self.stack.logs / f"worker-{node}.log"
        if log.exists():
            marks.update(worker_log_times(log.read_text(errors="replace")).get(job.key, {}))
        name = container_name(node, job.key)
        for mark, status in (("container_start", "start"), ("container_die", "die")):
            seen = self.containers.wait(name, status)
            if seen is not None:
                marks[mark] = seen
        return {"marks": marks, "job_id": job.job_id, "state": job.state, "node": node,
                "duration_s": self.reader.attempt_duration(job)}


def _wait_for(get: Any, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = get()
        if value is not None:
            return float(value)
        time.sleep(0.02)
    return None


# -- overhead per job ---------------------------------------------------------------------------
def overhead(bench: Bench, runs: int, confirmations: tuple[int, ...] = (0, 1)) -> dict[str, Any]:
    """(a) `docker run` alone, (b) the executor's runner called directly (the Celery task's body,
    in this process), interleaved; (c) end to end, requestJob → fulfillJob mined, per number of
    confirmations."""
    stack = bench.stack
    node = "bench-direct"
    runner = build_runner(WorkerSettings(
        broker_url=stack.env["COD_BROKER_URL"], ipfs_api=stack.env["COD_IPFS_API"], node_id=node,
        work_dir=stack.state_dir / "work" / node))
    spec = trivial_spec()
    plain: list[float] = []
    direct: list[dict[str, float]] = []
    for i in range(runs):
        plain.append(docker_run(BUSYBOX_IMAGE, TRIVIAL))
        key = f"bench-direct:{i}"
        start = time.time()
        outcome = runner.run(key, spec.to_json())
        end = time.time()
        assert outcome.status == "completed", outcome
        name = container_name(node, key)
        began = bench.containers.wait(name, "start") or start
        died = bench.containers.wait(name, "die") or end
        direct.append({"total": end - start, "before container": began - start,
                       "container": died - began, "after container": end - died})
    result: dict[str, Any] = {
        "runs": runs,
        "docker_run_s": median(plain),
        "executor_direct": {k: median(d[k] for d in direct) for k in direct[0]},
        "e2e": {},
    }
    for confs in confirmations:
        bench.restart_bridge(COD_CONFIRMATIONS=str(confs))
        bench.run_job(spec)  # warm-up: the bridge's first step, the worker's first task
        jobs = [bench.run_job(spec, confirmations=confs) for _ in range(runs)]
        breakdowns = [stage_breakdown(j["marks"]) for j in jobs]
        result["e2e"][str(confs)] = {
            "median": median_breakdown(breakdowns),
            "completed": sum(1 for j in jobs if j["state"] == JobState.COMPLETED),
            "jobs": [{"job_id": j["job_id"], "marks": j["marks"], **b}
                     for j, b in zip(jobs, breakdowns, strict=True)],
        }
    bench.restart_bridge(COD_CONFIRMATIONS="0")
    return result


# -- throughput ---------------------------------------------------------------------------------
def docker_rate(parallel: int, window: float, warmup: float) -> float:
    """Jobs per second of `parallel` loops of `docker run` over `window` s after `warmup` s."""
    start = time.time()
    stop_at = start + warmup + window
    ends: list[float] = []
    lock = threading.Lock()

    def loop() -> None:
        while time.time() < stop_at:
            docker_run(BUSYBOX_IMAGE, TRIVIAL)
            with lock:
                ends.append(time.time())

    threads = [threading.Thread(target=loop) for _ in range(parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return rate_in_window(ends, start + warmup, start + warmup + window)


def cod_rate(bench: Bench, parallel: int, window: float, warmup: float) -> dict[str, float]:
    """Keep a backlog of requests in flight for `warmup + window` s against one worker of
    `parallel` processes; jobs per second fulfilled on-chain (and executed) in the window."""
    spec = trivial_spec()
    target = 6 * parallel + 6
    done_before = bench.reader.count_done()
    sent = 0
    start = time.time()
    stop_at = start + warmup + window
    while time.time() < stop_at:
        outstanding = sent - (bench.reader.count_done() - done_before)
        for _ in range(max(0, target - outstanding)):
            bench.requester.send(spec)
            sent += 1
        time.sleep(0.3)
    w0, w1 = start + warmup, start + warmup + window
    fulfilled = rate_in_window(bench.reader.event_times(EventKind.FULFILLED, w0), w0, w1)
    executed = rate_in_window(bench.reader.event_times(EventKind.PUBLISHED, w0), w0, w1)
    drain_until = time.monotonic() + 180  # let the backlog finish before the next measurement
    while bench.reader.count_done() - done_before < sent and time.monotonic() < drain_until:
        time.sleep(0.5)
    return {"fulfilled_per_s": fulfilled, "executed_per_s": executed, "requests": sent}


def throughput(bench: Bench, parallelisms: tuple[int, ...], window: float, warmup: float
               ) -> list[dict[str, Any]]:
    rows = []
    for parallel in parallelisms:
        plain = docker_rate(parallel, window, warmup)
        bench.use_workers(("tp", parallel, False))
        cod = cod_rate(bench, parallel, window, warmup)
        rows.append({"parallelism": parallel, "docker_run_per_s": plain, **cod,
                     "ratio": cod["fulfilled_per_s"] / plain if plain else float("nan")})
        print(f"throughput x{parallel}: cod {cod['fulfilled_per_s']:.2f}/s, "
              f"docker run {plain:.2f}/s", flush=True)
    return rows


# -- locality -------------------------------------------------------------------------------------
def locality(bench: Bench, size_mb: int) -> dict[str, Any]:
    """A job over a `size_mb` dataset pinned on node-b only: routed to it (locality), then with
    node-b's worker stopped (it runs on node-a, which fetches the data over bitswap)."""
    stack = bench.stack
    bench.use_workers(("node-a", 1, True), ("node-b", 1, True))
    kubos = {n: KuboClient(stack.kubo_apis[f"nodekubo-{n}"], timeout=3600)
             for n in ("node-a", "node-b")}
    with tempfile.TemporaryDirectory(prefix="cod-bench-") as tmp:
        data = Path(tmp) / "dataset"
        with data.open("wb") as handle:
            for _ in range(size_mb):
                handle.write(os.urandom(MB))
        t0 = time.monotonic()
        cid = kubos["node-b"].add_path(data)
        add_s = time.monotonic() - t0
    index = DataIndex(stack.env["COD_BROKER_URL"])
    _wait_for(lambda: 1.0 if cid in index.holdings(["node-b"]).get("node-b", {}) else None, 60)
    spec = JobSpec(image=BUSYBOX_IMAGE, entrypoint=["sh", "-c", "wc -c < /inputs/data"],
                   inputs=[InputSource(source=f"ipfs://{cid}", target="/inputs/data")],
                   cache=False, timeout=3600)
    rows: dict[str, Any] = {"size_mb": size_mb, "dataset_add_s": add_s}

    def measure(label: str) -> None:
        before = {n: k.bitswap_received() for n, k in kubos.items()}
        job = bench.run_job(spec, timeout=3600)
        after = {n: k.bitswap_received() for n, k in kubos.items()}
        marks = job["marks"]
        rows[label] = {
            "node": job["node"], "state": job["state"],
            "end_to_end_s": marks.get("fulfil_block", 0) - marks["sent"],
            "executor_s": job["duration_s"],
            "input_fetch_s": marks.get("container_start", 0) - marks.get("task_start", 0),
            "bytes_moved": sum(after[n] - before[n] for n in kubos),
            "bytes_received": {n: after[n] - before[n] for n in kubos},
        }
        print(f"locality {label}: {rows[label]}", flush=True)

    measure("local")
    stack.stop_process("worker-node-b")  # its Kubo keeps serving the data
    bench.workers.remove("node-b")
    _wait_for(lambda: None if "node-b" in index.holdings(["node-b"]) else 1.0, 15)
    measure("non_local")
    return rows
