"""The `cod` command line."""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from bridge.config import BridgeSettings
from executor.node_cli import app as node_app

app = typer.Typer(help="cod: compute over data, bridged to smart contracts.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
contracts_app = typer.Typer(help="Deploy and inspect the contracts.", no_args_is_help=True)
job_app = typer.Typer(help="Inspect jobs.", no_args_is_help=True)
app.add_typer(contracts_app, name="contracts")
app.add_typer(job_app, name="job")
app.add_typer(node_app, name="node")
console = Console()
err = Console(stderr=True)


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@app.command()
def devstack(
    state_dir: Annotated[Path, typer.Option(help="Where the stack keeps its data.")] = Path(
        ".devstack"),
    block_time: Annotated[int, typer.Option(help="Seconds per block (0: mine on demand).")] = 1,
    random_ports: Annotated[bool, typer.Option(help="Use free ports, not the defaults.")] = False,
    bridge: Annotated[bool, typer.Option(help="Start the bridge.")] = True,
    worker: Annotated[bool, typer.Option(help="Start an executor worker.")] = True,
) -> None:
    """Run the whole stack locally (anvil, Kubo, Redis, Docker, bridge, worker) until Ctrl-C."""
    from bridge.devstack import DevStack, DevStackError

    stack = DevStack(state_dir, block_time=block_time, with_bridge=bridge, with_worker=worker,
                     preferred_ports=not random_ports)
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        stack.start()
    except DevStackError as exc:
        raise _fail(str(exc)) from None
    print(stack.exports(), end="")
    print(f"# logs in {stack.logs}; paste the lines above into another shell to use the stack")
    print("devstack ready", flush=True)
    try:
        while not stopping:
            dead = stack.check_alive()
            if dead:
                err.print(f"[red]stopped unexpectedly:[/red] {', '.join(dead)} (see {stack.logs})")
                break
            time.sleep(0.5)
    finally:
        stack.stop()
        print("devstack stopped", flush=True)


@app.command("bridge")
def bridge_cmd() -> None:
    """Run the bridge: listen for requests, dispatch them, submit results."""
    from bridge.chain import ChainError
    from bridge.logs import configure
    from bridge.service import Bridge

    settings = BridgeSettings()
    configure(json_logs=settings.json_logs)
    try:
        Bridge(settings).run_forever()
    except (ChainError, ValueError) as exc:
        raise _fail(str(exc)) from None


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Jobs run at once on this node.")] = 1,
    queues: Annotated[str | None, typer.Option(help="Celery queues to consume.")] = None,
) -> None:
    """Run an executor worker (a Celery worker) on this compute node."""
    from executor.celery_app import app as celery_app
    from executor.config import WorkerSettings
    from executor.engines.docker_engine import DockerEngine

    settings = WorkerSettings()
    removed = DockerEngine().remove_orphans(settings.node_id)
    if removed:
        err.print(f"removed {removed} container(s) left by an earlier run of {settings.node_id}")
    celery_app.worker_main([
        "worker", "--loglevel=INFO", f"--concurrency={concurrency}",
        f"--hostname={settings.node_id}@%h",
        f"--queues={queues or ','.join(settings.consumed_queues())}",
        "--without-gossip", "--without-mingle",
    ])


@app.command()
def demo(
    top: Annotated[int, typer.Option(help="Lines to keep in stage 2.")] = 3,
    text_file: Annotated[Path | None, typer.Option(help="Text to analyse.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the result.")] = 300,
) -> None:
    """Run the two-stage chained job from a contract against a running stack."""
    from bridge.demo import SAMPLE_TEXT, PipelineFailed, run_pipeline

    text = text_file.read_text() if text_file else SAMPLE_TEXT
    try:
        result = run_pipeline(BridgeSettings(), text, top, timeout)
    except (PipelineFailed, ValueError) as exc:
        raise _fail(str(exc)) from None
    console.print(f"input CID:          {result.input_cid}")
    console.print(f"stage 1 (job {result.stage1_job}) CID: {result.stage1_cid}")
    console.print(f"stage 2 (job {result.stage2_job}) CID: {result.final_cid}")
    console.print(f"top {top} lines by word count:")
    print(result.output, end="")
    console.print(f"time from first request to final result: {result.elapsed_s:.2f} s")


@contracts_app.command("deploy")
def contracts_deploy(
    min_fee_wei: Annotated[int, typer.Option(help="Minimum fee per job.")] = 10**15,
    job_window: Annotated[int, typer.Option(help="Seconds from request to deadline.")] = 3600,
    max_callback_gas: Annotated[int, typer.Option(help="Largest callback gas limit.")] = 2_000_000,
    oracle: Annotated[list[str] | None, typer.Option(help="Oracle address to authorise.")] = None,
) -> None:
    """Deploy a JobManager from COD_PRIVATE_KEY and authorise oracles; prints its address."""
    from bridge.chain import ChainError, TxSender, connect, job_manager

    settings = BridgeSettings()
    try:
        sender = TxSender(connect(settings.rpc_url), settings.require_key())
        address = sender.deploy("JobManager", min_fee_wei, job_window, max_callback_gas)
        manager = job_manager(sender.w3, address)
        for account in oracle or []:
            sender.transact(manager.functions.setOracle(account, True))
    except (ChainError, ValueError) as exc:
        raise _fail(str(exc)) from None
    print(f"export COD_CONTRACT={address}")


@job_app.command("describe")
def job_describe(job_id: int) -> None:
    """Show a job: its on-chain state and the bridge's timeline."""
    from bridge.chain import ChainError, connect, job_manager, read_job
    from bridge.ledger import Ledger

    settings = BridgeSettings()
    try:
        w3 = connect(settings.rpc_url)
        on_chain = read_job(job_manager(w3, settings.require_contract()), job_id)
    except (ChainError, ValueError) as exc:
        raise _fail(str(exc)) from None
    ledger = Ledger(settings.ledger_url)
    contract = settings.require_contract()
    job = ledger.get(w3.eth.chain_id, contract, job_id)
    out = {
        "id": job_id,
        "status": on_chain.status.name.lower(),
        "requester": on_chain.requester,
        "consumer": on_chain.consumer,
        "feeWei": on_chain.fee,
        "deadline": on_chain.deadline,
        "resultCid": on_chain.result_cid or None,
        "exitCode": on_chain.exit_code if on_chain.result_cid else None,
        "bridge": None if job is None else {"state": job.state, "node": job.node,
                                            "reason": job.reason, "spec": job.spec},
        "timeline": [
            {"at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(e.at)), "event": e.kind,
             "detail": e.detail}
            for e in ledger.timeline(w3.eth.chain_id, contract, job_id)
        ],
    }
    print(json.dumps(out, indent=2))


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(app())
