"""Bridge settings: `COD_*` environment variables over the TOML file named by `COD_CONFIG`."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from protocol.settings import CodSettings


class BridgeSettings(CodSettings):
    rpc_url: str = "http://127.0.0.1:8545"
    contract: str | None = None  # JobManager address
    oracle_key: SecretStr | None = None  # the bridge's key: fulfils and fails jobs
    private_key: SecretStr | None = None  # a user's key, for requests from the command line
    confirmations: int = 0  # blocks to wait before acting on an event (0 for dev chains)
    start_block: int = 0  # where to read from when the ledger has no checkpoint yet
    log_chunk_blocks: int = 2000  # eth_getLogs range per request
    # the loop runs on every new head and every pushed result (bridge.wake), and at least this often
    poll_interval_s: float = 0.5
    ws_url: str | None = None  # newHeads subscription; None: ws:// of rpc_url; "": poll for heads
    head_poll_s: float = 0.25  # eth_blockNumber polling when there is no subscription
    ledger_url: str = "sqlite:///cod-ledger.sqlite"
    broker_url: str = "redis://127.0.0.1:6379/0"
    ipfs_api: str = "http://127.0.0.1:5001"
    max_fee_gwei: float = 500.0  # never pay more per gas than this
    priority_fee_gwei: float = 1.0
    receipt_timeout_s: float = 120.0
    bump_after_blocks: int = 3  # replace a transaction not mined after this many blocks
    receipt_depth: int = 1  # blocks deep a receipt must be to count (raise it with confirmations)
    stall_grace_s: float = 60.0  # a started job silent this long past its timeout is re-run
    max_attempts: int = 3  # executions of one job before it is failed
    # Comma-separated node-key addresses (each worker logs its own at start): only results signed by
    # one of them count. Empty: every result is refused (and the bridge says so at start).
    node_addresses: str = ""
    reconcile_interval_s: float = 5.0
    locality: bool = True  # send a job to the node that holds its IPFS inputs
    locality_wait_s: float = 30.0  # … and to any node if that one has not started it by then
    # with several operators, each claims at once the jobs whose turn is its own (job id modulo the
    # operator count) and the others only after this long (so the normal case has no claim races)
    claim_grace_s: float = 3.0
    metrics_port: int = 0  # serve Prometheus metrics on 127.0.0.1:PORT (0: off)
    json_logs: bool = True

    def require_contract(self) -> str:
        if not self.contract:
            raise ValueError("no JobManager address: set COD_CONTRACT (cod contracts deploy prints it)")
        return self.contract

    def require_oracle_key(self) -> str:
        if self.oracle_key is None:
            raise ValueError("no oracle key: set COD_ORACLE_KEY")
        return self.oracle_key.get_secret_value()

    def require_key(self) -> str:
        if self.private_key is None:
            raise ValueError("no signing key: set COD_PRIVATE_KEY")
        return self.private_key.get_secret_value()


def ledger_url_for(state_dir: Path) -> str:
    return f"sqlite:///{state_dir / 'ledger.sqlite'}"
