"""`cod job describe|logs|get|list|cancel`, `cod node list`, `cod config show` against the stack."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from eth_account import Account
from web3 import Web3

from devstack.images import BUSYBOX_IMAGE
from devstack.stack import DevStack, dev_key
from tests.cli.conftest import Cod
from tests.e2e.client import Requester

SCRIPT = "echo out line; echo err line >&2; echo result > /outputs/file.txt"


def test_describe_logs_and_get_round_trip(cod: Cod, tmp_path: Path) -> None:
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
    assert [e["event"] for e in detail["timeline"]] == ["requested", "completed"]


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
