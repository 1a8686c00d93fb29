"""Node-key signatures over outcomes and cache entries: what verifies and what does not."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from bridge.redact import redact
from protocol.attestation import (
    SIGNATURE_FIELD,
    NodeIdentity,
    cache_entry_signer,
    check_outcome,
    load_or_create_key,
    parse_addresses,
    sign_cache_entry,
    sign_outcome,
    verify_outcome,
)

NODE = NodeIdentity.from_key(str(Account.create().key.to_0x_hex()))
STRANGER = NodeIdentity.from_key(str(Account.create().key.to_0x_hex()))
TASK = "31337:0xabc:7:1"
SPEC = '{"image": "busybox"}'
OUTCOME: dict[str, Any] = {"job_key": "31337:0xabc:7", "status": "completed", "node": "node-1",
                           "result_cid": "bafkqaaa", "exit_code": 0, "reason": None,
                           "duration_s": 0.25, "cached": False, "inputs_local": None,
                           "input_bytes_fetched": None}


def signed(identity: NodeIdentity, task_id: str = TASK, spec: str = SPEC, **changes: Any
           ) -> dict[str, Any]:
    fields = {**OUTCOME, **changes}
    return {**fields, SIGNATURE_FIELD: sign_outcome(identity.key, task_id, fields, spec=spec)}


def test_a_registered_nodes_outcome_verifies_after_the_backends_json_round_trip() -> None:
    outcome = json.loads(json.dumps(signed(NODE)))
    assert verify_outcome(TASK, outcome, {NODE.address}, spec=SPEC) == NODE.address
    assert verify_outcome(TASK, outcome, {NODE.address.lower()}, spec=SPEC) == NODE.address


@pytest.mark.parametrize("change", [
    {"result_cid": "bafkreidvkskpsgfvnp5qdoeschlih3sd4xx2apdawiyjrawhrf4f46njoi"},
    {"exit_code": 1}, {"status": "failed"}, {"reason": "x"}, {"node": "node-2"}, {"cached": True},
])
def test_any_field_changed_after_signing_is_refused(change: dict[str, Any]) -> None:
    tampered = {**signed(NODE), **change}
    verdict = check_outcome(TASK, tampered, frozenset({NODE.address}), spec=SPEC)
    assert verdict.signer is None and "not a registered node" in verdict.reason


def test_a_genuine_signature_replayed_onto_another_job_attempt_or_spec_is_refused() -> None:
    outcome = signed(NODE)
    assert verify_outcome("31337:0xabc:8:1", outcome, {NODE.address}, spec=SPEC) is None
    assert verify_outcome("31337:0xabc:7:2", outcome, {NODE.address}, spec=SPEC) is None
    assert verify_outcome(TASK, outcome, {NODE.address}, spec=SPEC + " ") is None


def test_unsigned_strangers_and_malformed_outcomes_are_refused() -> None:
    def reason(outcome: object, trusted: frozenset[str] = frozenset({NODE.address})) -> str:
        verdict = check_outcome(TASK, outcome, trusted, spec=SPEC)
        assert verdict.signer is None
        return verdict.reason

    assert reason(dict(OUTCOME)) == "the result is not signed"
    assert STRANGER.address in reason(signed(STRANGER))
    assert "malformed" in reason({**OUTCOME, SIGNATURE_FIELD: "0x12"})
    assert "not an outcome" in reason("bafkqaaa")
    assert "no node addresses" in reason(signed(NODE), frozenset())


def test_cache_entries_recover_their_writer_and_nothing_else() -> None:
    signature = sign_cache_entry(NODE, "k", "bafkqaaa", 0, "node-1")
    assert cache_entry_signer("k", "bafkqaaa", 0, "node-1", signature) == NODE.address
    assert cache_entry_signer("k", "bafkother", 0, "node-1", signature) != NODE.address
    assert cache_entry_signer("k", "bafkqaaa", 0, "node-1", "not hex") is None


def test_a_node_key_file_is_created_private_once_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    first = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == first
    assert first.key not in repr(first)
    os.chmod(path, 0o644)
    with pytest.raises(ValueError, match="readable by others"):
        load_or_create_key(path)


def test_addresses_are_checksummed_and_a_bad_one_is_named() -> None:
    assert parse_addresses(f" {NODE.address.lower()}, ,") == {NODE.address}
    with pytest.raises(ValueError, match="0x1234"):
        parse_addresses("0x1234")


def test_redact_hides_the_broker_password() -> None:
    assert redact("redis://:s3cret@127.0.0.1:6379/0") == "redis://***@127.0.0.1:6379/0"
    assert redact("redis://user:s3cret@host/0") == "redis://***@host/0"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
