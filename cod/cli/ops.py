"""Operator verbs: `cod devstack`, `cod bridge`, `cod worker`, `cod contracts deploy`,
`cod config show`, `cod api`, and the `cod demo` (`cod operator …`: `cod.cli.operator`)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from cod.cli.output import ENVIRONMENT, OutputFormat, console, err, fail, render


def devstack(
    state_dir: Annotated[Path, typer.Option(help="Where the stack keeps its data.")] = Path(
        ".devstack"),
    block_time: Annotated[int, typer.Option(help="Seconds per block (0: mine on demand).")] = 1,
    random_ports: Annotated[bool, typer.Option(help="Use free ports, not the defaults.")] = False,
    bridge: Annotated[bool, typer.Option(help="Start the bridge.")] = True,
    worker: Annotated[bool, typer.Option(help="Start an executor worker.")] = True,
    nodes: Annotated[int, typer.Option(
        min=1, help="Compute nodes (node-1 … node-N); more than one: each with its own Kubo, so "
                    "jobs run where their data is pinned (cod data pin --node).")] = 1,
) -> None:
    """Run the whole stack locally (anvil, Kubo, Redis, Docker, bridge, workers) until Ctrl-C."""
    from devstack.stack import DevStack, DevStackError

    stack = DevStack(state_dir, block_time=block_time, with_bridge=bridge, with_worker=worker,
                     preferred_ports=not random_ports, compute_nodes=nodes)
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        stack.start()
    except DevStackError as exc:
        fail(str(exc), ENVIRONMENT)
    print(stack.exports(), end="")
    print(f"# logs in {stack.logs}; paste the lines above into another shell to use the stack")
    for node_id, api in stack.node_ipfs_apis.items():
        print(f"# {node_id}: worker on Kubo {api} (pin data there: cod data pin --node {node_id})")
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


def bridge_cmd() -> None:
    """Run the bridge: listen for requests, dispatch them, submit results."""
    from bridge.chain import ChainError
    from bridge.config import BridgeSettings
    from bridge.logs import configure
    from bridge.service import Bridge

    settings = BridgeSettings()
    configure(json_logs=settings.json_logs)
    try:
        Bridge(settings).run_forever()
    except (ChainError, ValueError) as exc:
        fail(str(exc), ENVIRONMENT)


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


def demo(
    top: Annotated[int, typer.Option(help="Lines to keep in stage 2.")] = 3,
    text_file: Annotated[Path | None, typer.Option(help="Text to analyse.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the result.")] = 300,
) -> None:
    """Run the two-stage chained job from a contract against a running stack."""
    from bridge.config import BridgeSettings
    from devstack.demo import SAMPLE_TEXT, PipelineFailed, run_pipeline

    text = text_file.read_text() if text_file else SAMPLE_TEXT
    try:
        result = run_pipeline(BridgeSettings(), text, top, timeout)
    except (PipelineFailed, ValueError) as exc:
        fail(str(exc), ENVIRONMENT)
    console.print(f"input CID:          {result.input_cid}")
    console.print(f"stage 1 (job {result.stage1_job}) CID: {result.stage1_cid}")
    console.print(f"stage 2 (job {result.stage2_job}) CID: {result.final_cid}")
    console.print(f"top {top} lines by word count:")
    print(result.output, end="")
    console.print(f"time from first request to final result: {result.elapsed_s:.2f} s")


def contracts_deploy(
    min_fee_wei: Annotated[int, typer.Option(help="Minimum fee per job (per replica).")] = 10**15,
    job_window: Annotated[int, typer.Option(help="Seconds from request to deadline.")] = 3600,
    max_callback_gas: Annotated[int, typer.Option(help="Largest callback gas limit.")] = 2_000_000,
    callback_gas_price: Annotated[int, typer.Option(
        help="Wei per gas of callback a request pays for (at least the gas price you expect).")
    ] = 10**9,
    min_stake_wei: Annotated[int, typer.Option(
        help="Least stake an operator bonds to claim jobs (fixed at deployment).")] = 10**17,
    unbonding_delay: Annotated[int | None, typer.Option(
        help="Seconds from an operator's exit to its stake's withdrawal (at least the job "
             "window plus the 600 s reveal window; default: the larger of twice the job "
             "window and the job window plus an hour).")] = None,
) -> None:
    """Deploy a JobManager (v2) from COD_PRIVATE_KEY; prints its address.

    Operators are open: each bridge registers its own key with a stake (`cod operator
    register`)."""
    from bridge.chain import ChainError, TxSender, connect
    from bridge.config import BridgeSettings

    settings = BridgeSettings()
    try:
        sender = TxSender(connect(settings.rpc_url), settings.require_key())
        address = sender.deploy("JobManager", min_fee_wei, job_window, max_callback_gas,
                                callback_gas_price, min_stake_wei,
                                unbonding_delay if unbonding_delay is not None
                                else max(2 * job_window, job_window + 3600))
    except (ChainError, ValueError) as exc:
        fail(str(exc), ENVIRONMENT)
    print(f"export COD_CONTRACT={address}")



def config_show(
    output: Annotated[OutputFormat, typer.Option("--output", help="table, json or yaml.")
                      ] = OutputFormat.table,
) -> None:
    """The settings in effect (COD_* variables over the COD_CONFIG file over defaults).

    Keys are never printed: the addresses they sign for are."""
    from eth_account import Account

    from bridge.config import BridgeSettings

    settings = BridgeSettings()
    data: dict[str, object] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if name in ("private_key", "oracle_key"):
            address = Account.from_key(value.get_secret_value()).address if value else None
            data["key_address" if name == "private_key" else "oracle_address"] = address
            continue
        data[name] = value
    data["ledger_configured"] = "ledger_url" in settings.model_fields_set
    set_here = {name.replace("private_key", "key_address").replace("oracle_key", "oracle_address")
                for name in settings.model_fields_set}

    def table() -> None:
        for name, value in data.items():
            mark = " (set)" if name in set_here else ""
            console.print(f"{name:<20}{'' if value is None else value}{mark}", soft_wrap=True)

    render(data, output, table)


def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the read-only REST API (OpenAPI at /docs and /openapi.json)."""
    import uvicorn

    from cod.api import ApiSettings, create_app

    settings = ApiSettings()
    if not settings.contract:
        fail("no JobManager address: set COD_CONTRACT", ENVIRONMENT)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
