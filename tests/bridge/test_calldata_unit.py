"""`calldata` encodes straight through eth_abi: byte for byte what web3's encoder gives for every
call the bridge sends."""

from __future__ import annotations

from typing import Any

from web3 import Web3

from bridge.chain import load_artifact
from bridge.txmanager import calldata
from tests.bridge.fakes import CID, terms

CONTRACT = Web3().eth.contract(address=Web3.to_checksum_address(
    "0x5fbdb2315678afecb367f032d93f642f64180aa3"),
                               abi=load_artifact("JobManager")["abi"])


def test_every_settlement_call_encodes_as_web3_does() -> None:
    t = terms().as_tuple()
    f = CONTRACT.functions
    calls: list[Any] = [
        f.claimJob(7, t), f.fulfillJob(7, t, CID, 0, b"42\n"), f.failJob(7, t, "é" * 10),
        f.fulfillBatch([(i, t, CID, i % 3, bytes([i])) for i in range(20)]),
        f.commitResult(7, t, b"\x01" * 32), f.finalize(7, t),
        f.revealResult(7, t, CID, 1, b"", b"\x02" * 32),
    ]
    for call in calls:
        assert calldata(call) == call._encode_transaction_data()

