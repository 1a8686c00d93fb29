"""Request options (JobManager v2's `Options`): replicas, lease, claimers — from `cod docker run`
/ `cod job run` flags and job files to `requestJob` / `requestJobWith`, with the fee quoted for the
replicas. The chain is a fake that records the calls and answers with a fabricated receipt."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode
from eth_utils.abi import event_abi_to_log_topic
from hexbytes import HexBytes
from web3 import Web3

from bridge.chain import load_artifact
from bridge.config import BridgeSettings
from bridge.terms import TERMS_TYPE
from cod.cli import app
from cod.jobfile import JobFileError, parse_job_document
from cod.jobs import MAX_REPLICAS, JobClient, RequestOptions, RequestRefused, request_options
from protocol.spec import parse_spec

ABI: list[dict[str, Any]] = load_artifact("JobManager")["abi"]
CONTRACT = "0x" + "c0" * 20
ME = "0x" + "11" * 20
OPERATOR = Web3.to_checksum_address("0x" + "ab" * 20)
OTHER = Web3.to_checksum_address("0x" + "cd" * 20)
MIN_FEE = 10**15
GAS_PRICE = 10**9
SPEC = parse_spec('{"image": "busybox:1.36", "entrypoint": ["true"]}')


class FakeCall:
    def __init__(self, chain: FakeChain, name: str, args: tuple[Any, ...]) -> None:
        self.chain, self.name, self.args = chain, name, args

    def call(self) -> Any:
        self.chain.reads.append((self.name, self.args))
        if self.name == "quoteFee":
            consumer, gas, replicas = self.args
            return replicas * (MIN_FEE + (0 if int(consumer, 16) == 0 else gas * GAS_PRICE))
        return {"jobWindow": 3600, "defaultLease": 900, "paused": False}[self.name]


class FakeFunctions:
    def __init__(self, chain: FakeChain) -> None:
        self.chain = chain

    def __getattr__(self, name: str) -> Any:
        return lambda *args: FakeCall(self.chain, name, args)


class FakeChain:
    """`w3` (with `.eth`) and the JobManager contract in one."""

    def __init__(self) -> None:
        self.abi = ABI
        self.address = CONTRACT
        self.functions = FakeFunctions(self)
        self.reads: list[tuple[str, tuple[Any, ...]]] = []
        self.sent: list[tuple[str, tuple[Any, ...], int]] = []
        self.eth = self

    def contract(self, address: str, abi: Any) -> FakeChain:
        return self

    def get_balance(self, address: str) -> int:
        return 10**20



class FakeSender:
    address = ME

    def __init__(self, chain: FakeChain) -> None:
        self.chain = chain

    def transact(self, call: FakeCall, value: int = 0) -> dict[str, Any]:
        self.chain.sent.append((call.name, call.args, value))
        options = call.args[3] if call.name == "requestJobWith" else (1, 0, [])
        return {"logs": [job_requested(7, value, options[0], options[1] or 900,
                                       bool(options[2]))],
                "transactionHash": HexBytes(b"\x01" * 32), "blockNumber": 5}


def job_requested(job_id: int, fee: int, replicas: int, lease: int, restricted: bool
                  ) -> dict[str, Any]:
    event = next(e for e in ABI if e.get("type") == "event" and e["name"] == "JobRequested")
    terms = (ME, "0x" + "00" * 20, fee, 1_700_000_000, 0, replicas, lease, restricted,
             b"\x02" * 32)
    return {"address": CONTRACT, "blockNumber": 5, "logIndex": 0,
            "blockHash": HexBytes(b"\x03" * 32), "transactionHash": HexBytes(b"\x01" * 32),
            "topics": [HexBytes(event_abi_to_log_topic(event)), HexBytes(job_id.to_bytes(32, "big")),
                       HexBytes(bytes(12) + bytes.fromhex(ME[2:])), HexBytes(bytes(32))],
            "data": HexBytes(abi_encode([TERMS_TYPE, "string"], [terms, SPEC.to_json()]))}


def client() -> tuple[JobClient, FakeChain]:
    chain = FakeChain()
    job_client = JobClient(BridgeSettings(contract=CONTRACT), w3=chain)  # type: ignore[arg-type]
    job_client._sender = FakeSender(chain)  # type: ignore[assignment]
    return job_client, chain


def test_the_defaults_call_request_job_exactly_as_before() -> None:
    job_client, chain = client()
    requested = job_client.request(SPEC)
    assert chain.sent == [("requestJob", (SPEC.to_json(), "0x" + "00" * 20, 0), MIN_FEE)]
    assert ("quoteFee", ("0x" + "00" * 20, 0, 1)) in chain.reads
    assert requested.job_id == 7 and requested.fee_wei == MIN_FEE
    assert requested.terms is not None and requested.terms.replicas == 1


def test_a_job_longer_than_the_default_lease_asks_for_a_lease_that_covers_it() -> None:
    job_client, chain = client()
    long_job = parse_spec('{"image": "busybox:1.36", "entrypoint": ["true"], "timeout": 1800}')
    job_client.request(long_job)
    ((function, args, _),) = chain.sent
    assert function == "requestJobWith" and args[3] == (1, 1800 + 300, [])

    job_client, chain = client()
    too_long = parse_spec('{"image": "busybox:1.36", "entrypoint": ["true"], "timeout": 7200}')
    job_client.request(too_long)
    assert chain.sent[0][1][3] == (1, 3600, [])  # capped by the job window


def test_options_go_through_request_job_with_and_the_fee_is_quoted_for_the_replicas() -> None:
    job_client, chain = client()
    requested = job_client.request(SPEC, replicas=3, lease_s=120,
                                   claimers=[OPERATOR.lower(), OPERATOR])
    name, args, value = chain.sent[0]
    assert name == "requestJobWith"
    assert args[3] == (3, 120, [OPERATOR])  # checksummed, deduplicated
    assert ("quoteFee", ("0x" + "00" * 20, 0, 3)) in chain.reads
    assert value == 3 * MIN_FEE == requested.fee_wei
    assert requested.terms is not None
    assert (requested.terms.replicas, requested.terms.lease, requested.terms.restricted) == (
        3, 120, True)


def test_one_replica_with_a_lease_uses_request_job_with() -> None:
    job_client, chain = client()
    job_client.request(SPEC, replicas=1, lease_s=120)
    assert [(n, a[3]) for n, a, _ in chain.sent] == [("requestJobWith", (1, 120, []))]


def test_a_fee_below_the_replicated_quote_is_refused_before_sending() -> None:
    job_client, chain = client()
    with pytest.raises(RequestRefused, match=r"below the JobManager's minimum of "
                       rf"{3 * MIN_FEE} wei for this request \(3 replicas\): pass --fee"):
        job_client.request(SPEC, fee_wei=2 * MIN_FEE, replicas=3)
    assert chain.sent == []


def test_a_lease_beyond_the_job_window_is_refused_before_sending() -> None:
    job_client, chain = client()
    with pytest.raises(RequestRefused, match="longer than the JobManager's job window of 3600 s"):
        job_client.request(SPEC, lease_s=7200)
    assert chain.sent == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"replicas": 0}, f"replicas must be 1..{MAX_REPLICAS}, got 0"),
    ({"replicas": 8}, f"replicas must be 1..{MAX_REPLICAS}, got 8"),
    ({"lease_s": 59}, "lease must be at least 60 seconds (or 0 for the default), got 59"),
    ({"lease_s": -1}, "lease must be at least 60 seconds"),
    ({"claimers": ["0x1234"]}, "claimer '0x1234' is not an address"),
    ({"claimers": ["0x" + "00" * 20]}, "a claimer cannot be the zero address"),
    ({"claimers": ["0x" + f"{i + 1:040x}" for i in range(33)]}, "at most 32 claimers, got 33"),
])
def test_out_of_bounds_options_are_one_line_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        request_options(**kwargs)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    job_client, chain = client()
    with pytest.raises(RequestRefused, match=r"replicas|lease|claimer"):
        job_client.request(SPEC, **kwargs)
    assert chain.sent == []


def test_options_describe_themselves() -> None:
    assert RequestOptions().default
    assert RequestOptions().describe() == ("replicas 1, lease the JobManager's default, claimers "
                                           "any staked operator (requestJob)")
    assert request_options(3, 120, [OPERATOR]).describe() == (
        f"replicas 3, lease 120 s, claimers {OPERATOR} (requestJobWith)")


# ---------------------------------------------------------------------------------- job files

def test_bacalhau_count_is_the_replicas() -> None:
    def job(count: str | None) -> str:
        line = "" if count is None else f"Count: {count}\n"
        return f"Type: batch\n{line}Tasks:\n  - Engine: {{Type: docker, Params: {{Image: x}}}}\n"

    three = parse_job_document(job("3"))
    assert three.replicas == 3 and any("replicas = 3" in note for note in three.notes)
    assert parse_job_document(job("1")).replicas == 1
    assert parse_job_document(job(None)).replicas is None
    for bad in ("0", "8", "two", "2.5", "true"):
        with pytest.raises(JobFileError, match=r"^Count: .*: the replicas of a job are a whole "
                           r"number 1\.\.7"):
            parse_job_document(job(bad))


def test_our_job_file_may_say_replicas_which_is_not_part_of_the_spec() -> None:
    draft = parse_job_document('{"image": "x", "replicas": 5}')
    assert draft.replicas == 5 and "replicas" not in draft.fields
    assert parse_job_document('{"image": "x"}').replicas is None
    with pytest.raises(JobFileError, match=r"^replicas: 9: the replicas"):
        parse_job_document('{"image": "x", "replicas": 9}')


# ---------------------------------------------------------------------------------- the CLI

def cod(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        app([*args], prog_name="cod")
    out = capsys.readouterr()
    return int(exited.value.code or 0), out.out, out.err


def test_dry_run_shows_the_options(capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COD_CONTRACT", raising=False)
    code, out, err = cod(capsys, "docker", "run", "--dry-run", "--replicas", "3", "--lease",
                         "120", "--claimer", OPERATOR, "--claimer", "0x" + "cd" * 20,
                         "busybox:1.36", "--", "true")
    assert code == 0, err
    assert '"image": "busybox:1.36"' in out and "replicas" not in out  # the spec alone
    assert f"request: replicas 3, lease 120 s, claimers {OPERATOR}, {OTHER}" in err
    assert "(requestJobWith)" in err
    code, out, err = cod(capsys, "docker", "run", "--dry-run", "busybox:1.36", "--", "true")
    assert code == 0 and "request: replicas 1, lease the JobManager's default" in err
    assert "(requestJob)" in err


def test_a_job_files_count_is_used_and_the_flag_wins(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Any) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("Type: batch\nCount: 3\nTasks:\n  - Engine: {Type: docker, Params: "
                    "{Image: busybox:1.36}}\n")
    code, _, err = cod(capsys, "job", "run", "--dry-run", str(path))
    assert code == 0 and "request: replicas 3," in err
    code, _, err = cod(capsys, "job", "run", "--dry-run", "--replicas", "1", str(path))
    assert code == 0 and "request: replicas 1," in err


@pytest.mark.parametrize(("flags", "message"), [
    (["--replicas", "8"], "error: replicas must be 1..7, got 8"),
    (["--replicas", "0"], "error: replicas must be 1..7, got 0"),
    (["--lease", "30"], "error: lease must be at least 60 seconds"),
    (["--claimer", "nobody"], "error: claimer 'nobody' is not an address"),
])
def test_bad_options_exit_2_with_one_line(capsys: pytest.CaptureFixture[str], flags: list[str],
                                          message: str) -> None:
    code, out, err = cod(capsys, "docker", "run", "--dry-run", *flags, "busybox:1.36", "--",
                         "true")
    assert code == 2 and out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), err
