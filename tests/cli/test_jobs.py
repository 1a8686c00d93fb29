"""`cod job describe|logs|get|list|cancel`, `cod node list`, `cod config show` against the stack."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import yaml
from eth_account import Account
from web3 import Web3

from bridge.chain import load_artifact
from devstack.images import BUSYBOX_IMAGE
from devstack.stack import DevStack, dev_key
from tests.cli.conftest import Cod
from tests.e2e.client import Requester

SCRIPT = "echo out line; echo err line >&2; echo result > /outputs/file.txt"


def test_describe_logs_and_get_round_trip(cod: Cod, tmp_path: Path, stack: DevStack) -> None:
    ran = cod("docker", "run", "--id-only", BUSYBOX_IMAGE, "--", "sh", "-c", SCRIPT).ok()
    job_id = int(ran.stdout.strip())

    detail = json.loads(cod("job", "describe", str(job_id), "--output", "json").ok().stdout)
    assert detail["id"] == job_id and detail["status"] == "completed"
    assert detail["exitCode"] == 0 and detail["resultCid"].startswith("bafy")
    assert detail["node"] == "node-1" and detail["bridgeState"] == "completed"
    assert detail["spec"]["entrypoint"] == ["sh", "-c", SCRIPT]
    events = [(e["source"], e["event"]) for e in detail["timeline"]]
    for expected in [("chain", "requested"), ("bridge", "queued"), ("bridge", "published"),
                     ("chain", "completed"), ("bridge", "fulfilled")]:
        assert expected in events, events
    assert events.index(("bridge", "queued")) < events.index(("bridge", "published"))
    assert events.index(("bridge", "published")) < events.index(("chain", "completed"))
    as_yaml = yaml.safe_load(cod("job", "describe", str(job_id), "--output", "yaml").ok().stdout)
    assert as_yaml == detail
    table = cod("job", "describe", str(job_id)).ok().stdout
    assert f"Result CID:   {detail['resultCid']}" in table and "Timeline:" in table
    # the network: the stack's bridge operator claimed it (JobClaimed), alone (replicas 1)
    operator = Account.from_key(stack.oracle_key).address
    assert f"claimed by {operator} (lease until " in table
    assert "replicas 1, lease 900 s, claimers: any staked operator" in table
    assert [o["operator"] for o in detail["operators"]] == [operator]
    assert detail["operators"][0]["lapsed"] is False and detail["replicas"] == 1

    logs = cod("job", "logs", str(job_id)).ok()
    assert logs.stdout == "out line\n" and logs.stderr == "err line\n"

    cod("job", "get", str(job_id), "--output-dir", "got").ok()
    got = tmp_path / "got"
    assert sorted(p.name for p in got.iterdir()) == ["exitCode", "outputs", "stderr", "stdout"]
    assert (got / "stdout").read_text() == "out line\n"
    assert (got / "stderr").read_text() == "err line\n"
    assert (got / "exitCode").read_text().strip() == "0"
    assert (got / "outputs" / "file.txt").read_text() == "result\n"
    again = cod("job", "get", str(job_id), "--output-dir", "got")
    assert again.code == 2 and "exists" in again.error_line()


def test_describe_without_a_ledger_uses_chain_data_alone(cod: Cod) -> None:
    job_id = int(cod("docker", "run", "--id-only", BUSYBOX_IMAGE, "--", "true").ok().stdout)
    ran = cod("job", "describe", str(job_id), "--output", "json", env={"COD_LEDGER_URL": None})
    detail = json.loads(ran.ok().stdout)
    assert detail["status"] == "completed" and detail["bridgeState"] is None
    assert {e["source"] for e in detail["timeline"]} == {"chain"}
    assert [e["event"] for e in detail["timeline"]] == ["requested", "claimed", "completed"]


def test_run_with_request_options_goes_through_request_job_with(cod: Cod, stack: DevStack
                                                                 ) -> None:
    dry = cod("docker", "run", "--dry-run", "--replicas", "1", "--lease", "120", BUSYBOX_IMAGE,
              "--", "true").ok()
    assert "request: replicas 1, lease 120 s, claimers any staked operator (requestJobWith)" \
        in dry.stderr
    ran = cod("docker", "run", "--replicas", "1", "--lease", "120", BUSYBOX_IMAGE, "--", "sh",
              "-c", "echo leased").ok()
    job_id = int(re.findall(r"Job (\d+) requested", ran.stdout)[0])
    assert "; replicas 1, lease 120 s, claimers any staked operator (requestJobWith)" in ran.stdout
    detail = json.loads(cod("job", "describe", str(job_id), "--output", "json").ok().stdout)
    assert detail["status"] == "completed" and detail["exitCode"] == 0
    assert (detail["replicas"], detail["leaseSeconds"], detail["restricted"]) == (1, 120, False)
    w3 = Web3(Web3.HTTPProvider(stack.env["COD_RPC_URL"]))
    sent = bytes(w3.eth.get_transaction(detail["requestTx"])["input"])
    manager = w3.eth.contract(abi=load_artifact("JobManager")["abi"])
    name, args = manager.decode_function_input(sent)
    opts = dict(args["opts"])
    assert name.fn_name == "requestJobWith"
    assert (opts["replicas"], opts["lease"], list(opts["claimers"])) == (1, 120, [])
    claimed = next(e for e in detail["timeline"] if e["event"] == "claimed")
    operator = Account.from_key(stack.oracle_key).address
    assert claimed["source"] == "chain" and f"by {operator}, lease until" in claimed["detail"]
    lease_end = datetime.fromisoformat(detail["operators"][0]["leaseEnd"])
    claimed_at = datetime.fromisoformat(claimed["at"])
    assert 110 <= (lease_end - claimed_at).total_seconds() <= 121  # its own lease, not 900 s
    refused = cod("docker", "run", "--replicas", "8", BUSYBOX_IMAGE, "--", "true")
    assert refused.code == 2 and "replicas must be 1..7, got 8" in refused.error_line()


def test_job_list_filters_and_pages(cod: Cod, requester: Requester) -> None:
    cod("docker", "run", "--id-only", BUSYBOX_IMAGE, "--", "true").ok()
    cod("docker", "run", "--id-only", "cod/absent:0", "--", "true")  # a failed job
    everything = json.loads(cod("job", "list", "--limit", "1000", "--output", "json").ok().stdout)
    ids = [job["id"] for job in everything["jobs"]]
    assert ids == sorted(ids, reverse=True) and everything["total"] == len(ids) >= 2

    first = json.loads(cod("job", "list", "--limit", "1", "--output", "json").ok().stdout)
    second = json.loads(cod("job", "list", "--limit", "1", "--offset", "1", "--output",
                            "json").ok().stdout)
    assert [first["jobs"][0]["id"], second["jobs"][0]["id"]] == ids[:2]
    assert first["nextOffset"] == 1

    failed = json.loads(cod("job", "list", "--status", "failed", "--output", "json").ok().stdout)
    assert failed["jobs"] and {j["status"] for j in failed["jobs"]} == {"failed"}
    assert "image not available" in failed["jobs"][0]["reason"]

    mine = json.loads(cod("job", "list", "--requester", "me", "--limit", "1000", "--output",
                          "json").ok().stdout)
    me = Account.from_key(cod.env["COD_PRIVATE_KEY"]).address
    assert mine["total"] == sum(1 for job in everything["jobs"] if job["requester"] == me) >= 2
    assert {job["requester"] for job in mine["jobs"]} == {me}
    other = "0x" + "12" * 20
    assert json.loads(cod("job", "list", "--requester", other, "--output", "json").ok().stdout
                      )["total"] == 0
    recent = json.loads(cod("job", "list", "--since", "1h", "--output", "json").ok().stdout)
    assert recent["total"] == everything["total"]
    future = json.loads(cod("job", "list", "--since", "2999-01-01T00:00:00Z", "--output",
                            "json").ok().stdout)
    assert future["total"] == 0

    table = cod("job", "list", "--limit", "3").ok()
    assert table.stdout.split()[:7] == ["ID", "REQUESTED", "STATUS", "EXIT", "IMAGE", "NODE",
                                        "RESULT"]
    assert "3 of" in table.stderr


def test_cancel_after_the_deadline_refunds_the_fee(cod: Cod, stack: DevStack) -> None:
    # A JobManager with the shortest window and no bridge: its jobs stay requested.
    deployed = cod("contracts", "deploy", "--job-window", "60").ok().stdout
    contract = re.findall(r"export COD_CONTRACT=(0x[0-9a-fA-F]{40})", deployed)[0]
    env: dict[str, str | None] = {"COD_CONTRACT": contract, "COD_LEDGER_URL": None}
    job_id = cod("docker", "run", "--no-wait", "--id-only", BUSYBOX_IMAGE, "--", "true",
                 env=env).ok().stdout.strip()

    early = cod("job", "cancel", job_id, env=env)
    assert early.code == 4 and "only after its deadline" in early.error_line()
    running = cod("job", "logs", job_id, env=env)
    assert running.code == 5 and "still requested" in running.error_line()
    stranger = cod("job", "cancel", job_id, env={**env, "COD_PRIVATE_KEY": dev_key(3)})
    assert stranger.code == 4 and "only its requester can cancel it" in stranger.error_line()

    w3 = Web3(Web3.HTTPProvider(stack.env["COD_RPC_URL"]))
    w3.provider.make_request("evm_increaseTime", [120])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    me = w3.eth.account.from_key(cod.env["COD_PRIVATE_KEY"]).address
    before = w3.eth.get_balance(me)
    ran = cod("job", "cancel", job_id, env=env).ok()
    assert f"Job {job_id} cancelled" in ran.stdout and "Refunded 0.001 ETH" in ran.stdout
    gained = w3.eth.get_balance(me) - before
    assert 0.0009e18 < gained < 0.001e18  # the fee back, less the gas of two transactions

    detail = json.loads(cod("job", "describe", job_id, "--output", "json", env=env).ok().stdout)
    assert detail["status"] == "cancelled"
    assert [e["event"] for e in detail["timeline"]] == ["requested", "cancelled"]
    twice = cod("job", "cancel", job_id, env=env)
    assert twice.code == 4 and "already cancelled" in twice.error_line()
    logs = cod("job", "logs", job_id, env=env)
    assert logs.code == 1 and "cancelled" in logs.error_line()


def test_node_list_shows_the_worker(cod: Cod) -> None:
    nodes = json.loads(cod("node", "list", "--output", "json").ok().stdout)
    assert [n["id"] for n in nodes] == ["node-1"]
    assert {"cod.cpu", "cod.node.node-1"} <= set(nodes[0]["queues"])
    assert nodes[0]["cpus"] > 0 and nodes[0]["dataCids"] >= 0
    assert "node-1" in cod("node", "list").ok().stdout


def test_config_show_prints_addresses_never_keys(cod: Cod, stack: DevStack) -> None:
    ran = cod("config", "show", "--output", "json").ok()
    data = json.loads(ran.stdout)
    assert data["contract"] == stack.env["COD_CONTRACT"]
    assert data["key_address"] == Account.from_key(cod.env["COD_PRIVATE_KEY"]).address
    assert cod.env["COD_PRIVATE_KEY"].removeprefix("0x") not in ran.stdout
