"""The two-stage chained job the README's demo runs, from a contract.

Stage 1 counts the words of each line of a text on IPFS; the `TwoStagePipeline` consumer contract,
in its `onJobResult` callback, requests stage 2 over stage 1's result CID, which keeps the N lines
with the most words. Specs are rendered here, off-chain; on-chain only CIDs are spliced in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD

from bridge.chain import TxSender, connect, job_manager, load_artifact
from bridge.config import BridgeSettings
from cod.templates import CID_MARK, split_template
from devstack.images import BUSYBOX_IMAGE
from protocol.ipfs import KuboClient
from protocol.spec import InputSource, JobSpec, OutputPath, Resources

PIPELINE_CALLBACK_GAS = 500_000  # the stage-1 callback requests stage 2 (~300k measured)
RUN_COMPLETED, RUN_FAILED = 3, 4

SAMPLE_TEXT = """\
compute over data sends the code to the data
data is heavy
code is light
the result comes back on chain as a content identifier anyone can fetch
one two three
a contract can chain jobs by feeding one result into the next request
"""


def stage1_spec(input_cid: str) -> JobSpec:
    """Count words per line: `<count>\\t<line>` for each line of /inputs/text.txt."""
    return JobSpec(
        image=BUSYBOX_IMAGE,
        entrypoint=["sh", "-c", "awk '{print NF \"\\t\" $0}' /inputs/text.txt > /outputs/counts.tsv"],
        inputs=[InputSource(source=f"ipfs://{input_cid}", target="/inputs/text.txt")],
        outputs=[OutputPath(name="outputs", path="/outputs")],
        resources=Resources(cpu=0.5, memory="64Mi"),
        timeout=60,
    )


def stage2_spec(stage1_cid: str, top: int) -> JobSpec:
    """Keep the `top` lines with the most words (stable on ties) from stage 1's counts."""
    return JobSpec(
        image=BUSYBOX_IMAGE,
        entrypoint=["sh", "-c",
                    f"sort -s -k1,1nr /inputs/stage1/outputs/counts.tsv | head -n {top} "
                    "> /outputs/top.tsv"],
        inputs=[InputSource(source=f"ipfs://{stage1_cid}", target="/inputs/stage1")],
        outputs=[OutputPath(name="outputs", path="/outputs")],
        resources=Resources(cpu=0.5, memory="64Mi"),
        timeout=60,
    )


@dataclass(frozen=True)
class DemoResult:
    input_cid: str
    stage1_job: int
    stage1_cid: str
    stage2_job: int
    final_cid: str
    output: str
    elapsed_s: float


class PipelineFailed(RuntimeError):
    pass


def deploy_pipeline(sender: TxSender, manager: Contract, top: int) -> Contract:
    prefix1, suffix1 = split_template(stage1_spec(CID_MARK))
    prefix2, suffix2 = split_template(stage2_spec(CID_MARK, top))
    # each stage's fee: the minimum plus its callback's gas at the contract's price
    fee = int(manager.functions.quoteFee(sender.address, PIPELINE_CALLBACK_GAS, 1).call())
    address = sender.deploy("TwoStagePipeline", manager.address, prefix1, suffix1, prefix2,
                            suffix2, fee, PIPELINE_CALLBACK_GAS)
    abi = load_artifact("TwoStagePipeline")["abi"]
    return sender.w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi)


def run_pipeline(settings: BridgeSettings, text: str = SAMPLE_TEXT, top: int = 3,
                 timeout_s: float = 300.0) -> DemoResult:
    w3 = connect(settings.rpc_url)
    sender = TxSender(w3, settings.require_key())
    manager = job_manager(w3, settings.require_contract())
    kubo = KuboClient(settings.ipfs_api)
    input_cid = kubo.add_bytes(text.encode(), "text.txt")
    pipeline = deploy_pipeline(sender, manager, top)
    fee = int(pipeline.functions.stageFee().call())

    started = time.monotonic()
    receipt = sender.transact(pipeline.functions.start(input_cid), value=2 * fee)
    event = pipeline.events.PipelineStarted().process_receipt(receipt, errors=DISCARD)[0]
    run_id = int(event["args"]["runId"])
    deadline = started + timeout_s
    while True:
        run = pipeline.functions.getRun(run_id).call()
        stage1_job, stage2_job, stage1_cid, final_cid, status = run
        if status == RUN_COMPLETED:
            break
        if status == RUN_FAILED:
            logs = pipeline.events.PipelineFailed.get_logs(
                from_block=receipt["blockNumber"], argument_filters={"runId": run_id})
            reason = logs[-1]["args"]["reason"] if logs else "unknown"
            raise PipelineFailed(f"pipeline run {run_id} failed: {reason}")
        if time.monotonic() > deadline:
            raise PipelineFailed(f"pipeline run {run_id} not finished after {timeout_s:.0f} s")
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    completed = manager.events.JobCompleted.get_logs(
        from_block=receipt["blockNumber"], argument_filters={"jobId": stage2_job})
    assert completed and completed[0]["args"]["resultCid"] == final_cid
    output = kubo.cat(f"{final_cid}/outputs/top.tsv").decode()
    return DemoResult(input_cid, int(stage1_job), stage1_cid, int(stage2_job), final_cid, output,
                      round(elapsed, 2))
