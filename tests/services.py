"""Real services for tests that do not need the whole devstack: a private PostgreSQL cluster and a
standalone anvil with a deployed JobManager. Each fails loudly when it cannot start."""

from __future__ import annotations

import contextlib
import glob
import http.server
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from web3 import Web3
from web3.contract import Contract

from bridge import operators
from bridge.chain import TxSender, connect, job_manager
from devstack.stack import ANVIL_MNEMONIC, dev_key, find_anvil, free_port


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
def anvil_chain(min_fee: int = 10**15, window: int = 3600, block_time: int = 0,
                callback_gas_price: int = 10**9, min_stake: int = 10**17,
                rpc_timeout: float = 30.0, extra_args: tuple[str, ...] = ()) -> Iterator[Chain]:
    port = free_port()
    args = [find_anvil(), "--port", str(port), "--mnemonic", ANVIL_MNEMONIC, "--silent",
            *extra_args]
    if block_time:
        args += ["--block-time", str(block_time)]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                w3 = connect(url, timeout=rpc_timeout)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        owner = TxSender(w3, dev_key(0))
        oracle_key = dev_key(1)
        # v2: unbonding at least window + the reveal window; the oracle key bonds the minimum
        address = owner.deploy("JobManager", min_fee, window, 2_000_000, callback_gas_price,
                               min_stake, window + 3600)
        manager = job_manager(w3, address)
        operators.register(TxSender(w3, oracle_key), manager)
        yield Chain(url, w3, manager, owner, oracle_key, process)
    finally:
        process.terminate()
        process.wait(timeout=10)


class TcpProxy:
    """A TCP relay on loopback that a test can cut and restore: an RPC outage, for real."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.resume()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def resume(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        with self._lock:
            if self._server is not None:
                with contextlib.suppress(OSError):  # wakes the blocked accept() (Linux)
                    self._server.shutdown(socket.SHUT_RDWR)
                self._server.close()
                self._server = None
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


RpcError = dict[str, Any]  # a JSON-RPC error object: {"code": …, "message": …}
RpcPolicy = Callable[[dict[str, Any]], RpcError | None]


class RpcRelay:
    """A JSON-RPC relay in front of anvil, as a hosted RPC provider stands in front of a node:
    `policy` sees each request and returns the error to answer it with, or None to forward it."""

    def __init__(self, target_url: str, policy: RpcPolicy) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = json.loads(body)
                if isinstance(request, list):  # a JSON-RPC batch: the policy sees each call
                    self._reply([self._answer(item, json.dumps(item).encode())
                                 for item in request])
                    return
                self._reply(self._answer(request, body))

            def _answer(self, request: dict[str, Any], body: bytes) -> object:
                error = policy(request)
                if error is not None:
                    return {"jsonrpc": "2.0", "id": request["id"], "error": error}
                upstream = urllib.request.Request(target_url, data=body,
                                                  headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(upstream, timeout=30) as response:
                    return json.loads(response.read())

            def _reply(self, payload: object) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()


class RangeLimit:
    """An `RpcRelay` policy: refuse `eth_getLogs` over more than `max_blocks` blocks, as hosted RPC
    providers do, and count what it refused."""

    def __init__(self, max_blocks: int) -> None:
        self.max_blocks = max_blocks
        self.refused = 0
        self.log_requests: list[int] = []  # the width of each eth_getLogs range forwarded

    def __call__(self, request: dict[str, Any]) -> RpcError | None:
        if request.get("method") != "eth_getLogs":
            return None
        query = request["params"][0]
        width = int(query["toBlock"], 16) - int(query["fromBlock"], 16) + 1
        if width > self.max_blocks:
            self.refused += 1
            return {"code": -32005, "message": f"query exceeds max block range {self.max_blocks}"}
        self.log_requests.append(width)
        return None


class FailFirst:
    """An `RpcRelay` policy: answer the first `count` calls of `method` with an internal error, as
    an overloaded hosted RPC does."""

    def __init__(self, method: str, count: int) -> None:
        self.method = method
        self.left = count

    def __call__(self, request: dict[str, Any]) -> RpcError | None:
        if request.get("method") != self.method or self.left <= 0:
            return None
        self.left -= 1
        return {"code": -32603, "message": "internal error: overloaded"}
