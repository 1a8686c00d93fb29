"""`cod devstack`: the whole stack on one machine, for development, tests and the demo.

It starts anvil, a Kubo daemon, Redis and (if none runs) the Docker engine, deploys the JobManager,
then starts the bridge and one executor worker (or `compute_nodes` of them, each on a Kubo of its
own, to show data locality: `cod devstack --nodes N`). Everything it started, it stops, and what it
started dies with it if it is killed (a parent-death signal, and `devstack.reaper`). As in
production, Redis has a password (random per stack, in every broker URL) and each worker a node key
of its own, whose address the bridge is given (`COD_NODE_ADDRESSES`): only results it signs count.
`COD_NODE_IPFS_APIS` (`node-1=http://…,node-2=…`) names each worker's Kubo, for
`cod data pin --node`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import docker
import httpx
from docker.errors import DockerException
from eth_account import Account

from bridge import operators
from bridge.chain import TxSender, connect, job_manager
from devstack.images import ensure_busybox_image
from protocol.ipfs import KuboClient

# anvil's well-known dev accounts (mnemonic "test test … junk"): never use them on a real chain.
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
DEFAULT_MIN_FEE_WEI = 10**15  # 0.001 ETH
DEFAULT_JOB_WINDOW_S = 3600
DEFAULT_MAX_CALLBACK_GAS = 2_000_000
# Wei per gas of callback a request pays for (JobManager.callbackGasPrice): 1 gwei on a dev chain.
DEFAULT_CALLBACK_GAS_PRICE_WEI = 10**9
# JobManager v2: an operator's bond, and how long an exiting one waits for it (at least the job
# window plus the reveal window, so every claim it holds is settled or cancellable by then).
DEFAULT_MIN_STAKE_WEI = 10**17  # 0.1 ETH
DEFAULT_UNBONDING_DELAY_S = 2 * DEFAULT_JOB_WINDOW_S
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class DevStackError(RuntimeError):
    pass


def dev_key(index: int) -> str:
    Account.enable_unaudited_hdwallet_features()
    account = Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return str(account.key.to_0x_hex())


def free_port(preferred: int = 0) -> int:
    """`preferred` if it is free, else any free port."""
    for candidate in (preferred, 0) if preferred else (0,):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise DevStackError("no free port")


def find_anvil() -> str:
    candidates = [
        os.environ.get("COD_ANVIL_BIN", ""),
        shutil.which("anvil") or "",
        str(PROJECT_ROOT / "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise DevStackError("anvil not found: run scripts/bootstrap.sh (it installs it with npm)")


def _wait_for(what: str, check: Callable[[], bool], timeout: float,
              process: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise DevStackError(f"{what} exited with {process.returncode}:\n{tail}")
        try:
            if check():
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.2)
    raise DevStackError(f"{what} did not come up within {timeout:.0f} s")


@dataclass
class DevStack:
    state_dir: Path
    block_time: int = 1
    with_bridge: bool = True
    with_worker: bool = True
    with_chain: bool = True  # False: only Docker, Kubo and Redis (executor tests)
    preferred_ports: bool = True
    python: str = sys.executable
    worker_env: dict[str, str] = field(default_factory=dict)
    bridge_env: dict[str, str] = field(default_factory=dict)
    ledger_url: str | None = None  # default: SQLite in the state directory
    env: dict[str, str] = field(default_factory=dict)
    # node ids whose keys are registered with the bridge from the start (a worker started later
    # under a new id gets a key too, and the bridge is restarted to register it)
    nodes: tuple[str, ...] = ()
    # with_worker: this many compute nodes, `node-1` … `node-N`; more than one: each on a Kubo of
    # its own (as on separate hosts), so jobs go where their data is pinned
    compute_nodes: int = 1
    # joining another stack's chain as one more independent operator: its RPC and JobManager
    # (no anvil, no deployment here; this stack's `oracle_key` is registered as an operator)
    rpc_url: str | None = None
    contract: str | None = None
    oracle_key: str = field(default_factory=lambda: dev_key(1))  # the bridge's operator key
    _processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._kubo_ports: dict[str, int] = {}
        self.kubo_apis: dict[str, str] = {}  # Kubo name → API URL
        self.state_dir = self.state_dir.resolve()
        self.logs = self.state_dir / "logs"
        self.user_key = dev_key(0)
        self.redis_password = secrets.token_hex(16)
        self._redis_port = 0
        self.node_keys: dict[str, str] = {}  # node id → its signing key (COD_NODE_KEY)
        self._bridge_extra_env: dict[str, str] = {}
        self._reaper: subprocess.Popen[bytes] | None = None  # devstack.reaper, once started
        self.node_ipfs_apis: dict[str, str] = {}  # node id → the Kubo API its worker uses

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> dict[str, str]:
        """Start everything; returns the `COD_*` variables that point at this stack."""
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)  # a dev chain starts empty: so must everything else
        self.logs.mkdir(parents=True)
        self._start_reaper()
        try:
            self._start_docker()
            ensure_busybox_image()
            ipfs_api = self._start_kubo()
            broker_url = self._start_redis()
            self.env = {"COD_IPFS_API": ipfs_api, "COD_BROKER_URL": broker_url}
            if self.with_chain:
                if self.rpc_url is None:
                    rpc_url = self._start_anvil()
                    contract = self._deploy(rpc_url)
                else:
                    rpc_url, contract = self.rpc_url, self._join(self.rpc_url)
                self.env = {
                    "COD_RPC_URL": rpc_url,
                    "COD_CONTRACT": contract,
                    "COD_IPFS_API": ipfs_api,
                    "COD_BROKER_URL": broker_url,
                    "COD_PRIVATE_KEY": self.user_key,
                    "COD_LEDGER_URL": (self.ledger_url
                                       or f"sqlite:///{self.state_dir / 'ledger.sqlite'}"),
                    "COD_CONFIRMATIONS": "0",
                }
            workers = self.worker_ids() if self.with_worker else ()
            for node_id in (*self.nodes, *workers):
                self._node_key(node_id)
            if self.node_keys:
                self.env["COD_NODE_ADDRESSES"] = self._addresses()
            for node_id in workers:
                self.start_worker(node_id, own_kubo=self.compute_nodes > 1)
            if self.with_bridge:
                self.start_bridge()
        except BaseException:
            self.stop()
            raise
        env_file = self.state_dir / "env"
        env_file.touch(mode=0o600)  # it holds the Redis password
        env_file.write_text(self.exports())
        return self.env

    def worker_ids(self) -> tuple[str, ...]:
        """The node ids of the workers `start` starts: `node-1` … `node-<compute_nodes>`."""
        if self.compute_nodes < 1:
            raise DevStackError(f"compute_nodes must be at least 1, not {self.compute_nodes}")
        return tuple(f"node-{n}" for n in range(1, self.compute_nodes + 1))

    def exports(self) -> str:
        return "".join(f"export {name}={value}\n" for name, value in self.env.items())

    def _start_reaper(self) -> None:
        """The process that stops this stack's services if this process dies without `stop`
        (killed, crashed): `devstack.reaper`."""
        groups = self.state_dir / "groups"
        groups.touch()
        self._reaper = subprocess.Popen(
            [self.python, "-m", "devstack.reaper", str(os.getpid()), str(groups)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, cwd=PROJECT_ROOT)

    def stop(self) -> None:
        for name, process in reversed(self._processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            del name
        self._processes.clear()
        self._write_groups()
        self._clean_worker_leftovers()
        if self._reaper is not None and self._reaper.poll() is None:
            self._reaper.kill()  # everything it watched is stopped
            self._reaper.wait()

    def _clean_worker_leftovers(self) -> None:
        """A worker killed and not restarted leaves its result filesystems mounted: unmount
        them, as its next start would (its containers are left to `cod worker`'s next start:
        node ids like `node-1` may be shared with other stacks on this Docker engine)."""
        from executor.volumes import clean_work_dir

        work = self.state_dir / "work"
        for node_dir in work.iterdir() if work.exists() else []:
            if node_dir.is_dir():  # beside them: files such as the published-results index
                clean_work_dir(node_dir)

    def check_alive(self) -> list[str]:
        """Names of started processes that have exited."""
        return [name for name, process in self._processes if process.poll() is not None]

    # -- components ------------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None
               ) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            _with_parent_death_signal(args), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, start_new_session=True,
        )
        self._processes.append((name, process))
        self._write_groups()
        return process

    def _write_groups(self) -> None:
        """List the started services' process groups for `devstack.reaper`: only those not
        stopped yet, so a stopped service's pid, reused by some other process, is never signalled
        (replaced whole: the reaper never reads half a file)."""
        groups = self.state_dir / "groups"
        if not groups.parent.exists():
            return
        staged = groups.with_suffix(".new")
        staged.write_text("".join(f"{p.pid}\n" for _, p in self._processes))
        staged.replace(groups)

    def _port(self, preferred: int) -> int:
        return free_port(preferred if self.preferred_ports else 0)

    def _start_docker(self) -> None:
        try:
            docker.from_env(timeout=5).ping()
            return
        except DockerException:
            pass
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise DevStackError("no Docker engine and no dockerd: run scripts/bootstrap.sh")
        process = self._spawn("dockerd", [dockerd])
        _wait_for("dockerd", lambda: bool(docker.from_env(timeout=5).ping()), 60, process,
                  self.logs / "dockerd.log")

    def _start_anvil(self) -> str:
        port = self._port(8545)
        args = [find_anvil(), "--host", "127.0.0.1", "--port", str(port),
                "--mnemonic", ANVIL_MNEMONIC]
        if self.block_time > 0:
            args += ["--block-time", str(self.block_time)]
        process = self._spawn("anvil", args)
        url = f"http://127.0.0.1:{port}"
        _wait_for("anvil", lambda: connect(url, timeout=2).eth.block_number >= 0, 30, process,
                  self.logs / "anvil.log")
        return url

    def _start_kubo(self, name: str = "kubo") -> str:
        """Start a Kubo daemon (`kubo` is the stack's own; `nodekubo-<id>` a compute node's)."""
        ipfs = shutil.which("ipfs")
        if ipfs is None:
            raise DevStackError("Kubo (ipfs) not found: run scripts/bootstrap.sh")
        repo = self.state_dir / ("ipfs" if name == "kubo" else name)
        env = {"IPFS_PATH": str(repo)}

        def ipfs_cmd(*args: str) -> None:
            subprocess.run([ipfs, *args], check=True, env={**os.environ, **env},
                           capture_output=True)

        if not repo.exists():  # a restart (`start_kubo`) keeps the repo, its data and ports
            api_port, gateway_port, swarm_port = (self._port(5001), self._port(8080),
                                                  self._port(4001))
            # The "test" profile: no bootstrap peers, no MDNS, loopback only: a private node.
            ipfs_cmd("init", "--profile=test", "--empty-repo")
            ipfs_cmd("config", "Addresses.API", f"/ip4/127.0.0.1/tcp/{api_port}")
            ipfs_cmd("config", "Addresses.Gateway", f"/ip4/127.0.0.1/tcp/{gateway_port}")
            ipfs_cmd("config", "--json", "Addresses.Swarm",
                     f'["/ip4/127.0.0.1/tcp/{swarm_port}"]')
            self._kubo_ports[name] = api_port
        api_port = self._kubo_ports[name]
        process = self._spawn(name, [ipfs, "daemon"], env)
        url = f"http://127.0.0.1:{api_port}"
        _wait_for(name, lambda: httpx.post(f"{url}/api/v0/id", timeout=2).status_code == 200,
                  60, process, self.logs / f"{name}.log")
        self.kubo_apis[name] = url
        return url

    def start_node_kubo(self, node_id: str) -> str:
        """A compute node's own Kubo, connected to every other Kubo of the stack (so each can
        fetch what another holds, over bitswap); returns its API URL."""
        name = f"nodekubo-{node_id}"
        url = self._start_kubo(name)
        mine = KuboClient(url, timeout=30)
        for other, other_url in self.kubo_apis.items():
            if other == name:
                continue
            for address in KuboClient(other_url, timeout=30).peer_addresses():
                if address.startswith("/ip4/127.0.0.1/"):
                    mine.connect(address)
                    break
        return url

    def start_kubo(self) -> str:
        """Start Kubo again after `stop_process("kubo")`, with the same repo and ports."""
        return self._start_kubo()

    def _start_redis(self, port: int | None = None) -> str:
        """Redis with a password (`requirepass`, in a mode-0600 config file, not on the command
        line where `ps` shows it); returns the broker URL, which carries the password."""
        redis = shutil.which("redis-server") or "/usr/bin/redis-server"
        port = port or self._port(6379)
        self._redis_port = port
        config = self.state_dir / "redis.conf"
        config.touch(mode=0o600)
        config.write_text(f"requirepass {self.redis_password}\n")
        process = self._spawn("redis", [redis, str(config), "--port", str(port),
                                        "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                        "--dir", str(self.state_dir)])
        _wait_for("redis", lambda: _redis_ping(port, self.redis_password), 30, process,
                  self.logs / "redis.log")
        return f"redis://:{self.redis_password}@127.0.0.1:{port}/0"

    def _deploy(self, rpc_url: str) -> str:
        w3 = connect(rpc_url)
        owner = TxSender(w3, self.user_key)
        address = owner.deploy("JobManager", DEFAULT_MIN_FEE_WEI, DEFAULT_JOB_WINDOW_S,
                               DEFAULT_MAX_CALLBACK_GAS, DEFAULT_CALLBACK_GAS_PRICE_WEI,
                               DEFAULT_MIN_STAKE_WEI, DEFAULT_UNBONDING_DELAY_S)
        # the bridge's key bonds the minimum stake: it claims every job the stack runs
        operators.register(TxSender(w3, self.oracle_key), job_manager(w3, address))
        return address

    def _join(self, rpc_url: str) -> str:
        """Join a running chain's JobManager (`contract`) as one more operator: this stack's
        `oracle_key` bonds the minimum stake (unless it is registered already)."""
        if self.contract is None:
            raise DevStackError("joining a chain (rpc_url) needs its JobManager address (contract)")
        w3 = connect(rpc_url)
        operators.register(TxSender(w3, self.oracle_key), job_manager(w3, self.contract))
        return self.contract

    def node_address(self, node_id: str) -> str:
        """The address `node_id` signs its results with (registered with the bridge)."""
        return str(Account.from_key(self._node_key(node_id)).address)

    def _node_key(self, node_id: str) -> str:
        """`node_id`'s key (made on first use) and the stack's `COD_NODE_ADDRESSES` updated."""
        if node_id not in self.node_keys:
            self.node_keys[node_id] = str(Account.create().key.to_0x_hex())
            self.env["COD_NODE_ADDRESSES"] = self._addresses()
        return self.node_keys[node_id]

    def _addresses(self) -> str:
        return ",".join(str(Account.from_key(key).address) for key in self.node_keys.values())

    def start_worker(self, node_id: str, extra_env: dict[str, str] | None = None,
                     own_kubo: bool = False, concurrency: int = 1) -> subprocess.Popen[bytes]:
        """Start a worker running `concurrency` jobs at once; with `own_kubo`, on a Kubo of its
        own (a separate IPFS node, as on a separate host), started on first use and kept across
        worker restarts. A node id the running bridge does not know yet is registered with it (the
        bridge restarts)."""
        new_node = node_id not in self.node_keys
        node_key = self._node_key(node_id)
        if new_node and any(name == "bridge" and p.poll() is None for name, p in self._processes):
            self.stop_process("bridge")
            self.start_bridge(self._bridge_extra_env)
        kubo_env = {}
        if own_kubo:
            name = f"nodekubo-{node_id}"
            url = self.kubo_apis.get(name)
            if url is None or name in self.check_alive() or not any(
                    n == name for n, _ in self._processes):
                url = self.start_node_kubo(node_id)
            kubo_env = {"COD_IPFS_API": url}
        self.node_ipfs_apis[node_id] = kubo_env.get("COD_IPFS_API", self.env["COD_IPFS_API"])
        self.env["COD_NODE_IPFS_APIS"] = ",".join(
            f"{node}={api}" for node, api in self.node_ipfs_apis.items())
        env = {**self.env, "COD_NODE_ID": node_id, "COD_NODE_KEY": node_key, **kubo_env,
               "COD_WORK_DIR": str(self.state_dir / "work" / node_id), **self.worker_env,
               **(extra_env or {})}
        log = self.logs / f"worker-{node_id}.log"
        offset = log.stat().st_size if log.exists() else 0  # a restarted node appends
        process = self._spawn(f"worker-{node_id}",
                              [self.python, "-m", "cod.cli", "worker", "--concurrency",
                               str(concurrency)],
                              env)
        _wait_for(f"worker {node_id}", lambda: self._worker_ready(node_id, offset), 60, process,
                  log)
        return process

    def _worker_ready(self, node_id: str, offset: int = 0) -> bool:
        return b"ready" in (self.logs / f"worker-{node_id}.log").read_bytes()[offset:]

    def kill_worker(self, node_id: str) -> None:
        """SIGKILL a worker and its pool processes at once: the node dies mid-job (its
        containers, run by the Docker daemon, are left behind)."""
        for name, process in list(self._processes):
            if name == f"worker-{node_id}":
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
                self._processes.remove((name, process))
        self._write_groups()

    def restart_redis(self) -> None:
        """Kill Redis and start an empty one on the same port and password (no persistence: all
        queues lost)."""
        self.stop_process("redis", kill=True)
        self._start_redis(self._redis_port)

    def start_bridge(self, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        self._bridge_extra_env = dict(extra_env or {})
        env = {**self.env, "COD_ORACLE_KEY": self.oracle_key, "COD_POLL_INTERVAL_S": "0.25",
               **self.bridge_env, **(extra_env or {})}
        log = self.logs / "bridge.log"
        offset = log.stat().st_size if log.exists() else 0
        process = self._spawn("bridge", [self.python, "-m", "cod.cli", "bridge"], env)
        _wait_for("bridge", lambda: "bridge for" in log.read_bytes()[offset:].decode(), 30,
                  process, log)
        return process

    def stop_process(self, prefix: str, kill: bool = False) -> None:
        """Stop the started processes whose name starts with `prefix` (tests restart the bridge);
        `kill`: SIGKILL the whole process group at once (the process and any children)."""
        for name, process in list(self._processes):
            if name.startswith(prefix):
                if kill:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                else:
                    process.terminate()
                process.wait(timeout=30)
                self._processes.remove((name, process))
        self._write_groups()


def _with_parent_death_signal(args: list[str]) -> list[str]:
    """`args` run so that the service gets SIGTERM the moment the stack's process dies, however
    it dies (`setpriv --pdeathsig`, which then execs it: same pid, no Python `preexec_fn` in a
    threaded process). Only from the main thread: Linux sends the signal when the *thread* that
    started the child exits, and tests start services from helper threads; `devstack.reaper`
    covers those, and anything this misses."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return args
    return [setpriv, "--pdeathsig", "TERM", "--", *args]


def _redis_ping(port: int, password: str) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(f"AUTH {password}\r\nPING\r\n".encode())
        replies = b""
        while replies.count(b"\r\n") < 2 and (chunk := sock.recv(64)):
            replies += chunk
        return replies == b"+OK\r\n+PONG\r\n"
