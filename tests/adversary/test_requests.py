"""Requests a stranger crafts to stop the bridge: each is failed on-chain with its reason, and an
ordinary job requested after it still completes within seconds (the real stack)."""

from __future__ import annotations

import time

import pytest

from bridge.chain import JobStatus
from devstack.images import BUSYBOX_IMAGE
from protocol.spec import InputSource, JobSpec
from tests.adversary.hostile import request_raw
from tests.e2e.client import Requester

ORDINARY_WITHIN_S = 30.0  # generous for a loaded 2-core machine; typically 2–4 s


def ordinary_job_completes(requester: Requester) -> None:
    started = time.monotonic()
    job_id = requester.request(JobSpec(image=BUSYBOX_IMAGE, entrypoint=["echo", "still here"]))
    outcome = requester.wait(job_id, timeout=ORDINARY_WITHIN_S)
    assert outcome.job.status == JobStatus.COMPLETED, outcome.reason
    assert requester.result_file(outcome.job.result_cid, "stdout") == "still here\n"
    assert time.monotonic() - started < ORDINARY_WITHIN_S


HOSTILE_SPECS = {
    "not UTF-8": (b'{"image": "\xff\xfe\xc3\x28", "entrypoint": ["true"]}', "not UTF-8"),
    "5,000-digit integer": (b'{"image": "x", "timeout": ' + b"9" * 5000 + b"}", "4300 digits"),
    "3,000-deep nesting": (b'{"image": ' + b"[" * 3000 + b"]" * 3000 + b"}", "invalid spec"),
    "4,000-deep nesting": (b"[" * 4000 + b"]" * 4000, "invalid spec"),
    "lone surrogate": (b'{"image": "\\ud800"}', "surrogate"),
}


@pytest.mark.parametrize("name", list(HOSTILE_SPECS))
def test_a_spec_that_breaks_parsers_is_failed_and_later_jobs_run(requester: Requester,
                                                                  name: str) -> None:
    spec, reason = HOSTILE_SPECS[name]
    job_id = request_raw(requester, spec)
    ordinary_job_completes(requester)  # the listener and every step went on past it
    outcome = requester.wait(job_id, timeout=60)
    assert outcome.job.status == JobStatus.FAILED
    assert reason in outcome.reason
    assert not outcome.completed


def test_the_identity_cid_of_no_bytes_is_an_input_like_any_other(requester: Requester) -> None:
    # `bafkqaaa` is a valid CID (identity multihash of zero bytes); a length regex refused it
    spec = JobSpec(image=BUSYBOX_IMAGE, entrypoint=["wc", "-c", "/inputs/empty"],
                   inputs=[InputSource(source="ipfs://bafkqaaa", target="/inputs/empty")])
    outcome = requester.wait(requester.request(spec), timeout=60)
    assert outcome.job.status == JobStatus.COMPLETED, outcome.reason
    assert requester.result_file(outcome.job.result_cid, "stdout").split()[0] == "0"
