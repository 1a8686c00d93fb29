"""The key's machine-wide nonce lock (`cod.nonces`), with a fake node: the lock excludes another
process, the nonce is read from the node inside it, a "nonce taken" refusal is retried."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hexbytes import HexBytes

from cod.nonces import SharedNonceSender, key_lock, nonce_taken
from devstack.stack import dev_key

TRY_LOCK = """
import fcntl, sys
with open(sys.argv[1], "a") as handle:
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("held")
    else:
        print("free")
"""


def other_process_sees(path: Path) -> str:
    done = subprocess.run([sys.executable, "-c", TRY_LOCK, str(path)], capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stdout.strip()


def test_the_lock_excludes_other_processes_until_released(tmp_path: Path) -> None:
    with key_lock(31337, "0xABC", tmp_path) as path:
        assert path == tmp_path / "nonces" / "31337-0xabc.lock"
        assert other_process_sees(path) == "held"
    assert other_process_sees(path) == "free"


def test_the_state_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cod.nonces import state_dir

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert state_dir() == tmp_path / "cod"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert state_dir() == Path.home() / ".local" / "state" / "cod"


@pytest.mark.parametrize(("message", "taken"), [
    ("{'code': -32003, 'message': 'nonce too low'}", True),
    ("replacement transaction underpriced", True),
    ("transaction already imported", True),
    ("already known", True),
    ("insufficient funds for gas * price + value", False),
    ("execution reverted", False),
])
def test_nonce_taken_recognises_the_nodes_refusals(message: str, taken: bool) -> None:
    assert nonce_taken(ValueError(message)) is taken


class FakeEth:
    """A node whose pending count moves on between reads (another process sent meanwhile) and
    that refuses the first transaction as `nonce too low`."""

    chain_id = 31337

    def __init__(self) -> None:
        self.counts = iter([4, 5])
        self.sent: list[bytes] = []
        self.refusals = 1

    def get_transaction_count(self, address: str, block: str) -> int:
        assert block == "pending"
        return next(self.counts)

    def get_block(self, block: str) -> dict[str, int]:
        return {"baseFeePerGas": 10**9}

    def estimate_gas(self, tx: Any) -> int:
        return 21_000

    def send_raw_transaction(self, raw: bytes) -> HexBytes:
        if self.refusals:
            self.refusals -= 1
            raise ValueError({"code": -32003, "message": "nonce too low"})
        self.sent.append(bytes(raw))
        return HexBytes(b"\x01" * 32)


class FakeW3:
    def __init__(self) -> None:
        self.eth = FakeEth()


def test_a_taken_nonce_is_retried_with_the_nodes_new_count(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from eth_account import Account

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    w3 = FakeW3()
    sender = SharedNonceSender(w3, dev_key(9))  # type: ignore[arg-type]
    tx_hash = sender.send({"to": "0x" + "22" * 20, "value": 1}, wait=False)
    assert tx_hash == "0x" + "01" * 32
    (raw,) = w3.eth.sent
    assert Account.recover_transaction(raw) == sender.address
    from eth_account.typed_transactions import TypedTransaction

    assert TypedTransaction.from_bytes(HexBytes(raw)).as_dict()["nonce"] == 5
    assert (tmp_path / "cod" / "nonces" / f"31337-{sender.address.lower()}.lock").exists()
