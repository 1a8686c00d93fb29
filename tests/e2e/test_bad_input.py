"""Bad input ends a job with a clear reason on-chain, and the next job still runs normally."""

from __future__ import annotations

import json

from bridge.chain import JobStatus
from devstack.images import BUSYBOX_IMAGE
from protocol.spec import JobSpec, Resources
from tests.e2e.client import Requester


def shell_job(script: str, **fields: object) -> JobSpec:
    return JobSpec(image=BUSYBOX_IMAGE, entrypoint=["sh", "-c", script], **fields)  # type: ignore[arg-type]


def test_spec_that_is_not_json_is_failed_with_the_reason(requester: Requester) -> None:
    outcome = requester.wait(requester.request("{not json"))
    assert outcome.job.status == JobStatus.FAILED
    assert "not valid JSON" in outcome.reason
    assert not outcome.completed


def test_spec_that_fails_validation_names_the_field(requester: Requester) -> None:
    spec = json.dumps({"image": BUSYBOX_IMAGE, "resources": {"memory": "lots"}})
    outcome = requester.wait(requester.request(spec))
    assert outcome.job.status == JobStatus.FAILED
    assert "resources.memory" in outcome.reason


def test_missing_image_is_failed_as_not_available(requester: Requester) -> None:
    outcome = requester.wait(requester.request(JobSpec(image="cod/no-such-image:1")))
    assert outcome.job.status == JobStatus.FAILED
    assert outcome.reason == "image not available: cod/no-such-image:1"


def test_nonzero_exit_is_a_result_with_its_stderr(requester: Requester) -> None:
    outcome = requester.wait(requester.request(shell_job("echo broken >&2; exit 3")))
    assert outcome.job.status == JobStatus.COMPLETED
    assert outcome.job.exit_code == 3
    assert requester.result_file(outcome.job.result_cid, "stderr") == "broken\n"
    assert requester.result_file(outcome.job.result_cid, "exitCode").strip() == "3"


def test_timeout_kills_the_container_with_exit_124(requester: Requester) -> None:
    outcome = requester.wait(requester.request(shell_job("echo started; sleep 60", timeout=2)))
    assert outcome.job.status == JobStatus.COMPLETED
    assert outcome.job.exit_code == 124
    assert requester.result_file(outcome.job.result_cid, "stdout") == "started\n"
    assert "exceeded the job timeout of 2 s" in requester.result_file(
        outcome.job.result_cid, "stderr")


def test_memory_limit_kills_the_container_with_exit_137(requester: Requester) -> None:
    spec = shell_job("tail /dev/zero", resources=Resources(memory="32Mi"), timeout=60)
    outcome = requester.wait(requester.request(spec))
    assert outcome.job.status == JobStatus.COMPLETED
    assert outcome.job.exit_code == 137
    assert "out of memory (limit 32Mi)" in requester.result_file(outcome.job.result_cid, "stderr")


def test_unreachable_input_cid_fails_the_job(requester: Requester) -> None:
    # a valid CID whose content no node holds: the fetch gives up at the node's input timeout
    missing = requester.cid_nobody_has()
    spec = shell_job("cat /inputs/x", inputs=[{"source": f"ipfs://{missing}", "target": "/inputs/x"}])
    outcome = requester.wait(requester.request(spec), timeout=180)
    assert outcome.job.status == JobStatus.FAILED
    assert f"input ipfs://{missing} not available" in outcome.reason


def test_after_bad_jobs_a_good_job_runs_normally(requester: Requester) -> None:
    bad = [requester.request("[]"), requester.request(JobSpec(image="cod/absent:0"))]
    good = requester.request(shell_job("echo fine > /outputs/ok.txt"))
    for job_id in bad:
        assert requester.wait(job_id).job.status == JobStatus.FAILED
    outcome = requester.wait(good)
    assert outcome.job.status == JobStatus.COMPLETED and outcome.job.exit_code == 0
    assert requester.result_file(outcome.job.result_cid, "outputs/ok.txt") == "fine\n"
