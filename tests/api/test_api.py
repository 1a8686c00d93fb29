"""The REST API with real requests against a running `cod api` and the session's stack."""

from __future__ import annotations

import threading
import time

import httpx

from devstack.images import BUSYBOX_IMAGE
from protocol.spec import JobSpec
from tests.e2e.client import Requester


def shell(script: str) -> JobSpec:
    return JobSpec(image=BUSYBOX_IMAGE, entrypoint=["sh", "-c", script])


def test_health_and_openapi(api_url: str) -> None:
    health = httpx.get(f"{api_url}/healthz").json()
    assert health["status"] == "ok"
    assert {name for name, check in health["checks"].items() if check["ok"]} == {
        "chain", "ipfs", "broker", "ledger"}
    schema = httpx.get(f"{api_url}/openapi.json").json()
    assert set(schema["paths"]) == {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/logs", "/nodes",
                                    "/healthz", "/metrics"}
    assert httpx.get(f"{api_url}/docs").status_code == 200


def test_a_job_through_the_api(api_url: str, requester: Requester) -> None:
    job_id = requester.request(shell("echo hello api; echo oops >&2; echo x > /outputs/x.txt"))
    outcome = requester.wait(job_id)
    cid = outcome.job.result_cid

    page = httpx.get(f"{api_url}/jobs", params={"status": "completed", "limit": 1000}).json()
    listed = {job["id"]: job for job in page["jobs"]}
    assert listed[job_id]["resultCid"] == cid and listed[job_id]["node"] == "node-1"

    job = httpx.get(f"{api_url}/jobs/{job_id}").json()
    assert job["status"] == "completed" and job["exitCode"] == 0
    assert job["spec"]["entrypoint"][0] == "sh"
    assert job["links"]["result"] == f"ipfs://{cid}"
    assert job["links"]["outputs"]["outputs"].endswith(f"/ipfs/{cid}/outputs/")
    assert ("bridge", "published") in [(e["source"], e["event"]) for e in job["timeline"]]

    stdout = httpx.get(f"{api_url}{job['links']['stdout']}")
    assert stdout.status_code == 200 and stdout.text == "hello api\n"
    assert stdout.headers["content-type"].startswith("text/plain")
    assert httpx.get(f"{api_url}/jobs/{job_id}/logs", params={"stream": "stderr"}).text == "oops\n"


def test_logs_follow_waits_for_a_running_job(api_url: str, requester: Requester) -> None:
    job_id = requester.request(shell("sleep 2; echo late"))
    early = httpx.get(f"{api_url}/jobs/{job_id}/logs")
    assert early.status_code == 409 and "still" in early.json()["detail"]
    chunks: list[bytes] = []

    def follow() -> None:
        with httpx.stream("GET", f"{api_url}/jobs/{job_id}/logs",
                          params={"follow": "true", "timeout": 120}, timeout=150) as response:
            assert response.status_code == 200
            chunks.extend(response.iter_bytes())

    reader = threading.Thread(target=follow)
    started = time.monotonic()
    reader.start()
    reader.join(150)
    assert b"".join(chunks) == b"late\n"
    assert time.monotonic() - started > 1  # it did wait for the job


def test_errors_are_problems(api_url: str, requester: Requester) -> None:
    missing = httpx.get(f"{api_url}/jobs/999999")
    assert missing.status_code == 404 and "does not exist" in missing.json()["detail"]
    failed = requester.request(JobSpec(image="cod/absent:1"))
    requester.wait(failed)
    assert httpx.get(f"{api_url}/jobs/{failed}").json()["reason"].startswith("image not")
    assert httpx.get(f"{api_url}/jobs/{failed}/logs").status_code == 409
    assert httpx.get(f"{api_url}/jobs", params={"status": "nope"}).status_code == 422
    assert httpx.get(f"{api_url}/jobs", params={"since": "yesterday"}).status_code == 422


def test_nodes_and_metrics(api_url: str) -> None:
    nodes = httpx.get(f"{api_url}/nodes").json()
    assert [node["id"] for node in nodes] == ["node-1"]
    metrics = httpx.get(f"{api_url}/metrics").text
    assert 'cod_jobs{status="completed"}' in metrics and "cod_nodes 1" in metrics
    assert "cod_chain_head_block" in metrics
