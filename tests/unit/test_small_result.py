"""The small result (≤ 256 bytes, delivered on-chain with the result CID): the spec's `result`
names a file inside one of the job's outputs; the node reads it after the run (never following a
symlink, refusing more than 256 bytes) and carries it, hex, in its signed outcome."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from executor.engines.base import RunOutcome, RunRequest
from executor.runner import JobRunner, NodePolicy
from executor.storage import StorageRegistry
from protocol.attestation import check_outcome, sign_outcome
from protocol.capacity import Capacity
from protocol.outcome import JobOutcome, OutcomeStatus
from protocol.spec import MAX_RESULT_BYTES, SpecError, parse_spec
from tests.unit.test_registries import FakePublisher

KEY = "0x" + "11" * 32


def spec_text(**fields: object) -> str:
    return json.dumps({"image": "cod/busybox", **fields})


# -- the spec field ------------------------------------------------------------------------------
def test_result_names_a_file_inside_an_output() -> None:
    spec = parse_spec(spec_text(result="/outputs/answer.txt"))
    assert spec.result_file() == ("outputs", "answer.txt")
    assert json.loads(spec.to_json())["result"] == "/outputs/answer.txt"
    assert parse_spec(spec_text()).result is None  # unset: the on-chain result is empty
    assert parse_spec(spec_text()).result_file() is None


def test_result_is_found_in_the_deepest_output_that_holds_it() -> None:
    outputs = [{"name": "all", "path": "/"}, {"name": "sub", "path": "/out/sub"}]
    assert parse_spec(spec_text(outputs=outputs, result="/out/sub/a/b")).result_file() == (
        "sub", "a/b")
    assert parse_spec(spec_text(outputs=outputs, result="/out/x")).result_file() == (
        "all", "out/x")


@pytest.mark.parametrize(("result", "message"), [
    ("/tmp/answer", r"'/tmp/answer' is not a file inside an output \(outputs: /outputs\)"),
    ("/outputs", "is not a file inside an output"),
    ("/outputsx/a", "is not a file inside an output"),
    ("answer", r"field 'result': must be an absolute path"),
    ("/outputs/../etc/passwd", r"field 'result': must be a normalised absolute path"),
    ("/outputs//a", r"field 'result': must be a normalised absolute path"),
    ("/outputs/./a", r"field 'result': must be a normalised absolute path"),
])
def test_a_result_outside_the_outputs_is_refused(result: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(spec_text(result=result))


# -- the outcome and its signature ---------------------------------------------------------------
def test_the_outcome_carries_the_result_as_hex_and_refuses_a_malformed_one() -> None:
    outcome = JobOutcome("k", OutcomeStatus.COMPLETED, "n", "bafy", 0, result=b"42\n".hex())
    assert outcome.result_bytes() == b"42\n"
    assert JobOutcome.from_dict(outcome.to_dict()) == outcome
    assert JobOutcome("k", OutcomeStatus.COMPLETED, "n").result_bytes() == b""  # the default
    old = {k: v for k, v in outcome.to_dict().items() if k != "result"}  # from an older node
    assert JobOutcome.from_dict(old).result == ""
    for bad in ("xyz", "0" * (2 * MAX_RESULT_BYTES + 2), 7):
        with pytest.raises(ValueError, match="malformed outcome"):
            JobOutcome.from_dict({**outcome.to_dict(), "result": bad})


def test_the_result_is_bound_by_the_signature() -> None:
    fields = JobOutcome("k", OutcomeStatus.COMPLETED, "n", "bafy", 0, result="2a").to_dict()
    signed = {**fields, "signature": sign_outcome(KEY, "task", fields, spec="{}")}
    signer = check_outcome("task", signed, {_address()}, spec="{}").signer
    assert signer == _address()
    forged = {**signed, "result": "2b"}
    assert check_outcome("task", forged, {_address()}, spec="{}").signer is None


def _address() -> str:
    from protocol.attestation import NodeIdentity
    return NodeIdentity.from_key(KEY).address


# -- the node reads it ---------------------------------------------------------------------------
class WritingEngine:
    """An engine that "runs" a job by calling `write` on its (first) output directory."""

    def __init__(self, write: Callable[[Path], None], exit_code: int = 0) -> None:
        self._write = write
        self._exit_code = exit_code

    def prepare(self, spec: object, job_dir: Path) -> str:
        return "sha256:fake"

    def run(self, request: RunRequest) -> RunOutcome:
        request.stdout.write_text("out\n")
        request.stderr.write_text("")
        self._write(next(m for m in request.mounts if not m.read_only).host)
        return RunOutcome(exit_code=self._exit_code)


def run_job(tmp_path: Path, write: Callable[[Path], None], exit_code: int = 0,
            **spec: object) -> tuple[JobOutcome, FakePublisher]:
    publisher = FakePublisher()
    runner = JobRunner({"docker": WritingEngine(write, exit_code)}, StorageRegistry({}), publisher,
                       NodePolicy("node-a", Capacity(cpus=4, memory=8 * 1024**3)),
                       tmp_path / "work")
    return runner.run("job-1", spec_text(cache=False, **spec)), publisher


def write_file(name: str, data: bytes) -> Callable[[Path], None]:
    def write(out: Path) -> None:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    return write


@pytest.mark.parametrize("data", [b"", b"42\n", b"\x00\x7f" * 128])  # up to exactly 256
def test_the_result_file_is_read_into_the_outcome_and_published_too(
        tmp_path: Path, data: bytes) -> None:
    outcome, publisher = run_job(tmp_path, write_file("deep/answer", data),
                                 result="/outputs/deep/answer")
    assert (outcome.status, outcome.exit_code, outcome.result) == (
        OutcomeStatus.COMPLETED, 0, data.hex())
    assert outcome.result_bytes() == data
    (tree,) = publisher.published
    assert tree["outputs/deep/answer"] == data.decode()


def test_a_job_that_names_no_result_has_an_empty_one(tmp_path: Path) -> None:
    outcome, _ = run_job(tmp_path, write_file("result", b"not named by the spec"))
    assert (outcome.status, outcome.result) == (OutcomeStatus.COMPLETED, "")


def test_a_result_the_job_did_not_write_is_empty_with_a_note(tmp_path: Path) -> None:
    outcome, publisher = run_job(tmp_path, lambda out: None, exit_code=3, result="/outputs/answer")
    assert (outcome.status, outcome.exit_code, outcome.result) == (OutcomeStatus.COMPLETED, 3, "")
    assert publisher.published[0]["stderr"] == (
        "\ncod: no small result: the job did not write /outputs/answer (the on-chain result is "
        "empty)\n")


def test_a_result_over_256_bytes_fails_the_job_and_publishes_nothing(tmp_path: Path) -> None:
    outcome, publisher = run_job(tmp_path, write_file("answer", b"x" * 257),
                                 result="/outputs/answer")
    assert outcome.status == OutcomeStatus.FAILED
    assert outcome.reason is not None
    assert outcome.reason.startswith("small result over 256 bytes: /outputs/answer has 257 bytes")
    assert publisher.published == []


def test_a_symlinked_result_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("the node's secret")

    def link(out: Path) -> None:
        (out / "answer").symlink_to(secret)

    outcome, publisher = run_job(tmp_path, link, result="/outputs/answer")
    assert outcome.status == OutcomeStatus.FAILED
    assert "symlinks are not followed" in (outcome.reason or "")
    assert publisher.published == []

    def linked_dir(out: Path) -> None:
        (out / "d").symlink_to(tmp_path)

    outcome, _ = run_job(tmp_path, linked_dir, result="/outputs/d/secret")
    assert outcome.status == OutcomeStatus.FAILED
    assert "symlinks are not followed" in (outcome.reason or "")


def test_a_result_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    outcome, _ = run_job(tmp_path, lambda out: os.mkfifo(out / "answer"), result="/outputs/answer")
    assert (outcome.status, outcome.reason) == (
        OutcomeStatus.FAILED, "small result /outputs/answer is not a regular file")
    outcome, _ = run_job(tmp_path, lambda out: (out / "answer").mkdir(), result="/outputs/answer")
    assert (outcome.status, outcome.reason) == (
        OutcomeStatus.FAILED, "small result /outputs/answer is not a regular file")
