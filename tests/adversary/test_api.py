"""Attacks on the read side (`cod api`, `cod job list`), against the real stack.

- A request whose spec is not UTF-8 (Solidity does not check `string`): web3's decoder raises on
  its log, and a list built from `get_logs` failed as a whole. Now `/jobs` lists it as an
  undecodable request next to the others, from the ledger and from the chain alone.
- Error texts quoted the configured RPC and broker URLs, credentials included.
- `follow=true` held a worker thread for up to an hour: a few dozen followers took every thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from eth_typing import HexStr
from web3.types import TxParams, Wei

from devstack.images import BUSYBOX_IMAGE
from devstack.stack import DevStack, free_port
from protocol.spec import JobSpec
from tests.api.server import running_api
from tests.e2e.client import Requester

NOT_UTF8 = b'{"image": "cod/busybox:latest", "entrypoint": ["echo", "\xff\xfe\xc3("]}'


def request_raw_spec(requester: Requester, spec: bytes) -> int:
    """`requestJob` with spec bytes of our choosing: the calldata of an ASCII placeholder of the
    same length, with the placeholder's bytes replaced (a string's ABI layout is that of bytes)."""
    placeholder = b"Q" * len(spec)
    call = requester.manager.functions.requestJob(placeholder.decode(), "0x" + "0" * 40, 0)
    params: TxParams = {"from": requester.sender.address, "value": Wei(requester.fee), "gas": 1}
    tx = call.build_transaction(params)
    data = bytes.fromhex(str(tx["data"]).removeprefix("0x"))
    assert data.count(placeholder) == 1
    tx["data"] = HexStr("0x" + data.replace(placeholder, spec).hex())
    for key in ("gas", "maxFeePerGas", "maxPriorityFeePerGas", "nonce"):
        tx.pop(key, None)  # type: ignore[misc]
    receipt = requester.sender.send(tx)
    assert not isinstance(receipt, str) and receipt["status"] == 1
    topics = [log["topics"] for log in receipt["logs"]
              if log["address"] == requester.manager.address and len(log["topics"]) == 4]
    return int.from_bytes(bytes(topics[0][1]), "big")


@pytest.fixture(scope="module")
def api_url(stack: DevStack) -> Iterator[str]:
    with running_api(stack) as url:
        yield url


@pytest.fixture(scope="module")
def jobs(requester: Requester) -> tuple[int, int]:
    """A normal job and one whose spec is not UTF-8, requested in that order."""
    normal = requester.request(JobSpec(image=BUSYBOX_IMAGE, entrypoint=["true"]))
    bad = request_raw_spec(requester, NOT_UTF8)
    return normal, bad


def listed(url: str, **params: Any) -> dict[int, dict[str, Any]]:
    response = httpx.get(f"{url}/jobs", params={"limit": 100, **params}, timeout=30)
    assert response.status_code == 200, response.text
    return {int(job["id"]): job for job in response.json()["jobs"]}


def test_a_spec_that_is_not_utf8_is_listed_not_fatal_with_a_ledger(
        api_url: str, jobs: tuple[int, int]) -> None:
    normal, bad = jobs
    deadline = time.monotonic() + 60
    while bad not in (page := listed(api_url)):  # the bridge records it from its log
        assert time.monotonic() < deadline, f"job {bad} never listed: {sorted(page)}"
        time.sleep(0.5)
    assert normal in page
    assert "UTF-8" in str(page[bad]["reason"])
    detail = httpx.get(f"{api_url}/jobs/{bad}", timeout=30)
    assert detail.status_code == 200 and "UTF-8" in detail.json()["specError"]
    assert detail.json()["requestBlock"] is not None


def test_a_spec_that_is_not_utf8_is_listed_not_fatal_from_the_chain_alone(
        stack: DevStack, jobs: tuple[int, int]) -> None:
    normal, bad = jobs
    with running_api(stack, drop=("COD_LEDGER_URL",), name="api-no-ledger",
                     env={"COD_LOG_CHUNK_BLOCKS": "5"}) as url:  # many small windows
        page = listed(url)
        assert normal in page and bad in page
        assert str(page[bad]["reason"]).startswith("undecodable request: invalid spec: not UTF-8")
        assert page[normal]["image"] == BUSYBOX_IMAGE
        detail = httpx.get(f"{url}/jobs/{bad}", timeout=30).json()
        assert detail["specError"].startswith("undecodable request") and detail["spec"] is None
        first = httpx.get(f"{url}/jobs", params={"limit": 1}, timeout=30).json()
        assert len(first["jobs"]) == 1 and first["nextCursor"]
        second = httpx.get(f"{url}/jobs", params={"limit": 1, "cursor": first["nextCursor"]},
                           timeout=30).json()
        assert second["jobs"][0]["id"] < first["jobs"][0]["id"]


SECRETS = ("s3cr3t-pass", "0123456789abcdef0123456789abcdef", "qu3ry-secret", "r3dis-pass")


@pytest.fixture(scope="module")
def unreachable_api(stack: DevStack) -> Iterator[str]:
    """An API whose RPC and broker URLs carry credentials, on loopback ports nothing listens on."""
    closed = free_port()
    rpc = (f"http://alice:{SECRETS[0]}@127.0.0.1:{closed}/v3/{SECRETS[1]}?apikey={SECRETS[2]}")
    broker = f"redis://:{SECRETS[3]}@127.0.0.1:{closed}/0"
    with running_api(stack, env={"COD_RPC_URL": rpc, "COD_BROKER_URL": broker},
                     name="api-credentials", healthy=False) as url:
        yield url


@pytest.mark.parametrize("path", ["/jobs", "/jobs/1", "/jobs/1/logs", "/nodes", "/healthz",
                                  "/metrics"])
def test_error_responses_do_not_echo_credentials(unreachable_api: str, path: str) -> None:
    response = httpx.get(f"{unreachable_api}{path}", timeout=60)
    assert response.status_code == 503
    assert "127.0.0.1" in response.text  # the operator still learns which service is down
    for secret in SECRETS:
        assert secret not in response.text


def test_follow_is_bounded_and_holds_no_thread(stack: DevStack, requester: Requester) -> None:
    # no node has a GPU: the job stays requested for as long as its queue timeout
    job_id = requester.request(JobSpec(image=BUSYBOX_IMAGE, entrypoint=["true"],
                                       resources={"gpu": 1}, queue_timeout=600))  # type: ignore[arg-type]
    followers = 45  # more than the 40 threads of the server's pool
    follow_max_s = 30  # long enough that the probes below are answered while every one waits
    with running_api(stack, env={"COD_API_FOLLOW_MAX_S": str(follow_max_s),
                                 "COD_API_MAX_FOLLOWERS": str(followers)},
                     name="api-follow") as url:
        bodies: list[str] = []

        def follow() -> None:
            with httpx.stream("GET", f"{url}/jobs/{job_id}/logs",
                              params={"follow": "true", "timeout": 3600}, timeout=120) as response:
                bodies.append(f"{response.status_code} {response.read().decode()}")

        threads = [threading.Thread(target=follow) for _ in range(followers)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60  # 45 first reads of the job, on a loaded 2-core machine
        while True:  # until every follower waits (a probe with timeout 0 is answered at once)
            over = httpx.get(f"{url}/jobs/{job_id}/logs", params={"follow": "true", "timeout": 0},
                             timeout=30)
            if over.status_code == 503:
                break
            assert time.monotonic() < deadline, f"the follower cap never applied: {over.text}"
        assert "try again later" in over.json()["detail"]
        # served while the 45 requests wait: none of them has been answered yet
        assert httpx.get(f"{url}/jobs/{job_id}", timeout=30).status_code == 200
        assert bodies == [], "a follower ended before the cap's wait"
        for thread in threads:  # bounded by the cap's wait, not the 3,600 s asked for
            thread.join(follow_max_s + 100)
        assert not any(thread.is_alive() for thread in threads)
    assert len(bodies) == followers
    assert all(body.startswith("200 ") and f"after {follow_max_s} s" in body for body in bodies)
