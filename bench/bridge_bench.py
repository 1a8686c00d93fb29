"""Bridge scaling: listener catch-up over a backlog, and submitter fulfilments per second.

    .venv/bin/python -m bench.bridge_bench [--requests 10000] [--blocks 50000] [--fulfil 500]
        [--log-chunk 2000]

Against a real anvil and a real Redis (started here): a backlog of `--requests` JobRequested events
spread over at least `--blocks` blocks is read by a fresh listener into a fresh SQLite ledger and
dispatched to Celery (no worker consumes them); then `--fulfil` executed jobs are submitted with the
transaction manager (anvil automines). Writes bench/results/bridge.{md,json}.

anvil runs with `--hardfork cancun --prune-history`. With its defaults (anvil 1.7.1: the Prague
hardfork, every block's state kept) each mined block costs time proportional to the chain's length
(EIP-2935 stores every block hash in a history contract whose storage anvil re-hashes per block, and
each kept state is a full copy): mining 1,000 empty blocks took 1 s at height 0 and 18 s at height
7,000, so a 50,000-block backlog was quadratic (≈ 45 min). With both flags 1,000 blocks take 0.04 s
at any height. `eth_getLogs` itself was never the cost (25 calls over 50,000 blocks: well under 1 s).
"""

from __future__ import annotations

import argparse
import json
import resource
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from eth_account import Account
from web3 import Web3

from bridge.chain import TxSender
from bridge.claims import Claims
from bridge.dispatcher import BrokerEpoch, Dispatcher
from bridge.ledger import JobState, Ledger, TxStatus
from bridge.listener import Listener
from bridge.ports import CeleryTaskQueue, ContractChain, RedisNodeBoard
from bridge.submitter import Submitter
from bridge.terms import Terms
from bridge.txmanager import TxManager, calldata
from devstack.stack import free_port
from executor.capacity import detect_capacity
from protocol.messaging import make_app
from protocol.nodes import NodeInfo, NodeRegistry
from protocol.queues import queues_for_node
from tests.services import anvil_chain

SPEC = json.dumps({"image": "cod/busybox:latest", "entrypoint": ["sh", "-c", "echo hi"],
                   "inputs": [{"source": "ipfs://bafkreidovn72i5u5267d2jpcgldmxcrh2a3n7bx5xt4g6cpfjnd45mr7wi",
                               "target": "/inputs/text.txt"}], "timeout": 60})
ZERO = "0x" + "0" * 40
RESULTS = Path(__file__).parent / "results"


ANVIL_ARGS = ("--hardfork", "cancun", "--prune-history")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def make_backlog(w3: Web3, sender: TxSender, manager: object, requests: int, blocks: int,
                 batch: int = 250) -> dict[str, float]:
    """`requests` requests in batches of `batch` per block, empty blocks in between; returns the
    seconds spent sending transactions and mining."""
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    account = Account.from_key(sender.account.key)
    nonce = int(w3.eth.get_transaction_count(account.address))
    fee = int(manager.functions.minFee().call())  # type: ignore[attr-defined]
    data = calldata(manager.functions.requestJob(SPEC, ZERO, 0))  # type: ignore[attr-defined]
    gap = max(1, blocks // max(1, requests // batch))
    chain_id = w3.eth.chain_id
    base = int(w3.eth.get_block("latest")["baseFeePerGas"])
    sent = 0
    spent = {"send_s": 0.0, "mine_s": 0.0}
    while sent < requests:
        t0 = time.monotonic()
        for _ in range(min(batch, requests - sent)):
            tx = {"to": manager.address, "data": data, "value": fee, "gas": 200_000,  # type: ignore[attr-defined]
                  "maxFeePerGas": 4 * base + 10**9, "maxPriorityFeePerGas": 10**9,
                  "nonce": nonce, "chainId": chain_id, "type": 2}
            w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
            nonce += 1
            sent += 1
        t1 = time.monotonic()
        w3.provider.make_request("anvil_mine", ["0x1"])  # type: ignore[arg-type]
        w3.provider.make_request("anvil_mine", [hex(gap)])  # type: ignore[arg-type]
        base = int(w3.eth.get_block("latest")["baseFeePerGas"])
        spent["send_s"] += t1 - t0
        spent["mine_s"] += time.monotonic() - t1
    w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    return {k: round(v, 1) for k, v in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--blocks", type=int, default=50_000)
    parser.add_argument("--fulfil", type=int, default=500)
    parser.add_argument("--log-chunk", type=int, default=2000)
    args = parser.parse_args()
    write(run(args.requests, args.blocks, args.fulfil, args.log_chunk))


def run(requests: int, blocks: int, fulfil: int, log_chunk: int = 2000) -> dict[str, object]:
    """Build the backlog, catch up, dispatch, fulfil; returns the report."""
    work = Path(tempfile.mkdtemp(prefix="cod-bench-"))
    redis_port = free_port()
    password = secrets.token_hex(16)  # as in every stack cod starts: Redis with a password
    config = work / "redis.conf"
    config.touch(mode=0o600)
    config.write_text(f"requirepass {password}\n")
    redis = subprocess.Popen([shutil.which("redis-server") or "redis-server", str(config), "--port",
                              str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"],
                             stdout=subprocess.DEVNULL)
    broker = f"redis://:{password}@127.0.0.1:{redis_port}/0"
    report: dict[str, object] = {"requests": requests, "blocks": blocks, "log_chunk": log_chunk,
                                 "anvil_args": " ".join(ANVIL_ARGS), "machine": _machine()}
    try:
        with anvil_chain(min_fee=10**12, rpc_timeout=600, extra_args=ANVIL_ARGS) as chain:
            t0 = time.monotonic()
            report["backlog_build"] = make_backlog(chain.w3, chain.owner, chain.manager,
                                                   requests, blocks)
            head = chain.w3.eth.block_number
            report["backlog_blocks"] = head
            report["backlog_build_s"] = round(time.monotonic() - t0, 1)

            ledger = Ledger(f"sqlite:///{work / 'ledger.sqlite'}")
            listener = Listener(chain.w3, chain.manager, ledger, 0, 0, log_chunk)
            rss_before = rss_mb()
            rss_series = [round(current_rss_mb(), 1)]
            t0 = time.monotonic()
            seen = listener.poll()
            listen_s = time.monotonic() - t0
            rss_series.append(round(current_rss_mb(), 1))
            dispatcher = Dispatcher(CeleryTaskQueue(make_app(broker)), RedisNodeBoard(broker),
                                    ledger, BrokerEpoch(broker),
                                    listener.chain_id, listener.address)
            _pretend_a_node(broker)  # the dispatcher holds jobs back while no node could run them
            t0 = time.monotonic()
            while dispatcher.dispatch_pending():
                rss_series.append(round(current_rss_mb(), 1))  # every 500 jobs
            dispatch_s = time.monotonic() - t0
            assert seen == requests, (seen, requests)
            report.update({
                "rss_series_mb": rss_series,
                "listener_s": round(listen_s, 2),
                "listener_events_per_s": round(seen / listen_s, 1),
                "listener_blocks_per_s": round(head / listen_s, 1),
                "dispatch_s": round(dispatch_s, 2),
                "dispatch_jobs_per_s": round(seen / dispatch_s, 1),
                "bridge_max_rss_mb": round(rss_mb(), 1),
                "bridge_rss_growth_mb": round(rss_mb() - rss_before, 1),
            })

            # submitter: mark the first N jobs executed and fulfil them
            jobs = ledger.jobs_in(listener.chain_id, listener.address, JobState.DISPATCHED,
                                  limit=fulfil)
            txm = TxManager(chain.w3, chain.oracle_key, ledger)
            on_chain = ContractChain(chain.manager)
            # v2: only a job's claimer may fulfil it; the dispatcher above ran without claims (it
            # measures dispatching), so the N jobs are claimed here, timed on their own
            t0 = time.monotonic()
            claim_txs = [txm.enqueue(f"claim:{job.key}:0", on_chain.address,
                                     on_chain.claim_calldata(job.job_id, Terms.from_row(job))).id
                         for job in jobs]
            while any((tx := txm.get(tx_id)) is None
                      or tx.status not in (TxStatus.CONFIRMED, TxStatus.FATAL)
                      for tx_id in claim_txs):
                txm.process()
            report["claim_s"] = round(time.monotonic() - t0, 2)
            for job in jobs:
                ledger.mark_executed(job, "bench", "bafybeifnpx3io52zdt45tzxhynk7qf55hhbzfxtux24xfchmlqipybr6ne",
                                     0, None, "bench")
            claims = Claims(on_chain, txm, ledger, listener.chain_id, txm.address)
            submitter = Submitter(on_chain, txm, ledger, listener.chain_id, claims)
            t0 = time.monotonic()
            done = 0
            while done < len(jobs):
                submitter.submit_ready()
                txm.process()
                done += submitter.confirm()
            submit_s = time.monotonic() - t0
            completed = len(ledger.jobs_in(listener.chain_id, listener.address,
                                           JobState.COMPLETED, limit=10**6))
            report.update({"fulfilled": completed, "submit_s": round(submit_s, 2),
                           "fulfilments_per_s": round(completed / submit_s, 1)})
    finally:
        redis.terminate()
        shutil.rmtree(work, ignore_errors=True)
    return report


def _pretend_a_node(broker: str) -> None:
    capacity = detect_capacity(None, None, None)
    NodeRegistry(broker).beat(NodeInfo("bench-node", queues_for_node(capacity, False), capacity,
                                       seen_at=time.time()), ttl_s=3600)


def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), "?")
    return f"{cpu}, {subprocess.check_output(['nproc']).decode().strip()} cores"


def write(report: dict[str, object]) -> None:
    series = report.get("rss_series_mb", [])
    rss_series = " → ".join(str(x) for x in series) if isinstance(series, list) else ""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bridge.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Bridge scaling",
        "",
        f"Command: `.venv/bin/python -m bench.bridge_bench --requests {report['requests']} "
        f"--blocks {report['blocks']} --log-chunk {report['log_chunk']}` "
        f"(anvil `{report['anvil_args']}`)",
        f"Machine: {report['machine']}",
        "",
        "| measure | value |",
        "|---|---|",
        f"| backlog | {report['requests']} requests over {report['backlog_blocks']} blocks, built in {report['backlog_build_s']} s ({report['backlog_build']}) |",
        f"| listener catch-up | {report['listener_s']} s: **{report['listener_events_per_s']} events/s**, {report['listener_blocks_per_s']} blocks/s |",
        f"| dispatch to Celery (Redis) | {report['dispatch_s']} s: **{report['dispatch_jobs_per_s']} jobs/s** |",
        f"| bridge memory (max RSS) | {report['bridge_max_rss_mb']} MB, grew {report['bridge_rss_growth_mb']} MB over the backlog |",
        f"| bridge RSS, before / after catch-up / every 500 dispatched (MB) | {rss_series} |",
        f"| submitter (anvil automine) | {report['fulfilled']} fulfilments in {report['submit_s']} s: **{report['fulfilments_per_s']} /s** |",
    ]
    (RESULTS / "bridge.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
