"""Settings checks and the wait loop shared by `cod docker run`, `cod job run` and `cod job logs`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cod.cli.output import ENVIRONMENT, JOB_FAILED, OK, STILL_RUNNING, console, err, fail

if TYPE_CHECKING:  # the chain, the ledger and IPFS are imported by the verbs that use them
    from bridge.config import BridgeSettings
    from cod.queries import JobReader, Progress

TaskState = Callable[[str], tuple[str, str]]


def load_settings(contract: bool = True, key: bool = False) -> BridgeSettings:
    """Settings from the environment; a missing one is an environment error (exit 3)."""
    from bridge.config import BridgeSettings

    settings = BridgeSettings()
    if contract and not settings.contract:
        fail("no JobManager address: set COD_CONTRACT (cod contracts deploy and cod devstack "
             "print it)", ENVIRONMENT)
    if key and settings.private_key is None:
        fail("no signing key: set COD_PRIVATE_KEY to the key that pays for jobs", ENVIRONMENT)
    return settings


def task_state_reader(broker_url: str) -> TaskState | None:
    """Reads a Celery task's state and node from the result backend; None without a broker."""
    from celery.result import AsyncResult

    from cod.nodes import BrokerUnavailable, check_broker
    from protocol.messaging import make_app

    try:
        check_broker(broker_url)
    except BrokerUnavailable:
        return None
    app = make_app(broker_url)

    def state(task_id: str) -> tuple[str, str]:
        try:
            result = AsyncResult(task_id, app=app)
            info = result.info if result.state == "STARTED" else None
            host = str(info.get("hostname", "?")) if isinstance(info, dict) else "?"
            return str(result.state), host.split("@", 1)[0]
        except Exception:  # the backend is an optional source of detail
            return "UNKNOWN", ""
    return state


def wait_for(reader: JobReader, job_id: int, timeout_s: float, show: bool) -> Progress:
    """Poll until the job leaves `requested` on-chain, printing each new stage to stderr."""
    task_state = task_state_reader(reader.settings.broker_url) if reader.ledger else None
    deadline = time.monotonic() + timeout_s
    last = -1
    while True:
        progress = reader.progress(job_id, task_state)
        if show and progress.rank > last:
            for stage, detail in _skipped(progress, last):
                err.print(f"  {stage:<10} {detail}".rstrip(), soft_wrap=True)
            err.print(f"  {progress.stage:<10} {progress.detail}".rstrip(), soft_wrap=True)
            last = progress.rank
        if progress.done:
            return progress
        if time.monotonic() > deadline:
            fail(f"job {job_id} is still {progress.stage} after {timeout_s:.0f} s; it goes on "
                 f"(cod job describe {job_id})", STILL_RUNNING)
        time.sleep(0.25)


def _skipped(progress: Progress, last: int) -> list[tuple[str, str]]:
    """Stages that happened between two polls, from what the ledger recorded."""
    from cod.queries import Stage, stage_rank

    stages = [(Stage.REQUESTED, "")]
    if progress.task_id:
        stages.append((Stage.QUEUED, progress.task_id))
    if progress.node and progress.stage != Stage.REJECTED:
        stages.append((Stage.RUNNING, f"on {progress.node}"))
    return [(s, d) for s, d in stages if last < stage_rank(s) < progress.rank]


def print_logs(settings: BridgeSettings, cid: str) -> None:
    """The job's stdout to our stdout, its stderr to our stderr."""
    from cod.results import read_log
    from protocol.ipfs import KuboClient

    kubo = KuboClient(settings.ipfs_api)
    try:
        stdout, stderr = read_log(kubo, cid, "stdout"), read_log(kubo, cid, "stderr")
    finally:
        kubo.close()
    sys.stdout.flush()
    sys.stdout.buffer.write(stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(stderr)
    sys.stderr.flush()


def download_result(settings: BridgeSettings, cid: str, destination: Path) -> Path:
    from cod.results import download
    from protocol.ipfs import KuboClient

    kubo = KuboClient(settings.ipfs_api)
    try:
        return download(kubo, cid, destination)
    finally:
        kubo.close()


def outcome_code(progress: Progress, quiet: bool = False) -> int:
    """Print how the job ended (unless quiet); 0 only for a completed job that exited 0."""
    from bridge.chain import JobStatus

    job = progress.job
    if job.status == JobStatus.COMPLETED:
        if not quiet:
            console.print(f"Result CID: {progress.result_cid or '(JobCompleted not found)'}")
            console.print(f"Exit code:  {progress.exit_code}")
            text = progress.result.result_text if progress.result is not None else None
            if text:
                console.print(f"Result:     {text}", soft_wrap=True, markup=False)
            elif progress.result is not None and progress.result.result:
                console.print(f"Result:     {progress.result.result_hex}")
        return OK if progress.exit_code == 0 else JOB_FAILED
    if not quiet:
        reason = f": {progress.detail}" if progress.detail else ""
        console.print(f"Job {job.status.name.lower()}{reason}")
    return JOB_FAILED
