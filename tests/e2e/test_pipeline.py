"""The product's spine: a contract requests a job, whose callback chains a second job over the first
one's result CID; the final result comes back on-chain and its content is right."""

from __future__ import annotations

from bridge.config import BridgeSettings
from devstack.demo import run_pipeline
from tests.e2e.client import Requester

TEXT = "one\nthe five words of this\ntwo words\nfour words right here\nthree words here\n"


def test_two_stage_pipeline_from_a_contract(settings: BridgeSettings, requester: Requester
                                            ) -> None:
    result = run_pipeline(settings, TEXT, top=2, timeout_s=180)

    assert result.output == "5\tthe five words of this\n4\tfour words right here\n"
    # stage 2 really consumed stage 1's result: its input was stage 1's CID
    stage2_request = requester.events("JobRequested", result.stage2_job)
    assert f"ipfs://{result.stage1_cid}" in stage2_request[0]["args"]["spec"]
    counts = requester.result_file(result.stage1_cid, "outputs/counts.tsv")
    assert counts.splitlines() == ["1\tone", "5\tthe five words of this", "2\ttwo words",
                                   "4\tfour words right here", "3\tthree words here"]
    # one result each, the Bacalhau result layout
    for job_id, cid in ((result.stage1_job, result.stage1_cid),
                        (result.stage2_job, result.final_cid)):
        outcome = requester.wait(job_id)
        assert len(outcome.completed) == 1
        assert outcome.job.result_cid == cid
        assert requester.result_file(cid, "exitCode").strip() == "0"
        assert requester.result_file(cid, "stderr") == ""
