"""The read side on JobManager v2: the job view holds only a digest, so the result comes from
`JobCompleted` (checked against the digest), the terms from `JobRequested`; a claimed or revealing
job is still "requested" to users, and "done" means settled (not open)."""

from __future__ import annotations

from bridge.chain import JobStatus, OnChainJob
from bridge.ledger import NewJob
from bridge.terms import Terms, result_digest
from cod.jobs import terms_of
from cod.queries import Progress, Stage, _held_detail, _status, printable_text, result_from_event
from cod.views import Status

CID = "bafkreidovn72i5u5267d2jpcgldmxcrh2a3n7bx5xt4g6cpfjnd45mr7wi"
OPERATOR = "0x" + "ab" * 20


def completed(cid: str = CID, code: int = 0, result: bytes = b"") -> OnChainJob:
    return OnChainJob(JobStatus.COMPLETED, digest=result_digest(cid, code, result))


def test_the_result_comes_from_the_event_and_is_checked_against_the_digest() -> None:
    args = {"jobId": 7, "resultCid": CID, "exitCode": 3, "result": b"42\n", "operator": OPERATOR}
    result = result_from_event(args, completed(CID, 3, b"42\n"))
    assert result is not None
    assert (result.result_cid, result.exit_code, result.result) == (CID, 3, b"42\n")
    assert result.operator == OPERATOR and result.verified is True
    assert result.result_hex == "0x34320a" and result.result_text == "42\n"
    forged = result_from_event(dict(args, result=b"43\n"), completed(CID, 3, b"42\n"))
    assert forged is not None and forged.verified is False
    unchecked = result_from_event(args, None)
    assert unchecked is not None and unchecked.verified is None


def test_an_undecodable_completion_has_no_result() -> None:
    assert result_from_event({"jobId": 7, "undecodable": "UnicodeDecodeError"}) is None


def test_the_small_result_is_text_only_when_printable() -> None:
    assert printable_text(b"hello\tworld\n") == "hello\tworld\n"
    assert printable_text("é".encode()) == "é"
    assert printable_text(b"") is None
    assert printable_text(b"\xff\xfe") is None  # not UTF-8
    assert printable_text(b"\x00\x01") is None  # UTF-8, not printable
    assert printable_text(b"\x1b[31mred") is None  # no terminal escapes


def test_claimed_and_revealing_jobs_show_as_requested() -> None:
    assert _status(JobStatus.REQUESTED) == Status.REQUESTED
    assert _status(JobStatus.CLAIMED) == Status.REQUESTED
    assert _status(JobStatus.REVEALING) == Status.REQUESTED
    assert _status(JobStatus.COMPLETED) == Status.COMPLETED
    assert _status(JobStatus.FAILED) == Status.FAILED
    assert _status(JobStatus.CANCELLED) == Status.CANCELLED


def test_done_means_settled() -> None:
    for status, done in ((JobStatus.REQUESTED, False), (JobStatus.CLAIMED, False),
                         (JobStatus.REVEALING, False), (JobStatus.COMPLETED, True),
                         (JobStatus.FAILED, True), (JobStatus.CANCELLED, True)):
        assert Progress(Stage.REQUESTED, "", OnChainJob(status)).done is done
    assert Progress(Stage.FULFILLED, CID, completed()).result_cid is None  # none looked up


def test_who_holds_an_open_job() -> None:
    held = OnChainJob(JobStatus.CLAIMED, lease_end=1_700_000_000, claimer=OPERATOR)
    assert _held_detail(held) == f"claimed by {OPERATOR}, lease until 2023-11-14T22:13:20Z"
    assert _held_detail(OnChainJob(JobStatus.REVEALING)) == "replicas are revealing their results"
    assert _held_detail(OnChainJob(JobStatus.REQUESTED)) == ""


def test_terms_are_rebuilt_from_the_request_event() -> None:
    terms = Terms(requester="0x" + "11" * 20, consumer="0x" + "00" * 20, fee=10**15,
                  deadline=1_700_000_000, callback_gas_limit=0, replicas=1, lease=900,
                  restricted=False, request_hash=bytes(range(32)))
    request = NewJob(job_id=1, requester=terms.requester, consumer=terms.consumer, spec="{}",
                     fee_wei=terms.fee, deadline=terms.deadline, block_number=5, block_hash="0x",
                     tx_hash="0x", log_index=0, callback_gas_limit=0,
                     request_hash="0x" + terms.request_hash.hex(), replicas=1, lease_s=900)
    rebuilt = terms_of(request)
    assert rebuilt == terms and rebuilt.digest() == terms.digest()
