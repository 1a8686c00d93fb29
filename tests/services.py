"""Real services for tests that do not need the whole devstack: a private PostgreSQL cluster and a
standalone anvil with a deployed JobManager. Each fails loudly when it cannot start."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from web3 import Web3
from web3.contract import Contract

from bridge.chain import TxSender, connect, job_manager
from bridge.devstack import ANVIL_MNEMONIC, dev_key, find_anvil, free_port


@contextmanager
def postgres() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on a free port; yields its SQLAlchemy URL."""
    initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert initdb, "PostgreSQL is not installed: run scripts/bootstrap.sh"
    bindir = Path(initdb[-1]).parent
    # PostgreSQL refuses to run as root: its files live where the postgres user can reach them
    base = Path(tempfile.mkdtemp(prefix="cod-pg-"))
    data = base / "pgdata"
    data.mkdir()
    shutil.chown(base, "postgres")
    shutil.chown(data, "postgres")
    port = free_port()

    def as_postgres(*args: str) -> None:
        done = subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True,
                              text=True)
        assert done.returncode == 0, f"{args[0]} failed: {done.stderr or done.stdout}"

    as_postgres(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(data / "log"), "-w",
                "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class Chain:
    """A standalone anvil with a JobManager; `owner` requests jobs, `oracle_key` fulfils them."""

    url: str
    w3: Web3
    manager: Contract
    owner: TxSender
    oracle_key: str
    process: subprocess.Popen[bytes]

    def mine(self, blocks: int = 1) -> None:
        self.w3.provider.make_request("anvil_mine", [hex(blocks)])  # type: ignore[arg-type]

    def rpc(self, method: str, *params: object) -> object:
        response = self.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        assert "error" not in response, response
        return response.get("result")


@contextmanager
def anvil_chain(min_fee: int = 10**15, window: int = 3600, block_time: int = 0) -> Iterator[Chain]:
    port = free_port()
    args = [find_anvil(), "--port", str(port), "--mnemonic", ANVIL_MNEMONIC, "--silent"]
    if block_time:
        args += ["--block-time", str(block_time)]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                w3 = connect(url, timeout=5)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        owner = TxSender(w3, dev_key(0))
        address = owner.deploy("JobManager", min_fee, window, 2_000_000)
        manager = job_manager(w3, address)
        oracle_key = dev_key(1)
        owner.transact(manager.functions.setOracle(TxSender(w3, oracle_key).address, True))
        yield Chain(url, w3, manager, owner, oracle_key, process)
    finally:
        process.terminate()
        process.wait(timeout=10)
