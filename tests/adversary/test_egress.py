"""SSRF and slow-drip attacks on URL fetches (inputs and WASM modules), run through a real runner.

A requester names any URL; the worker fetches it from the operator's network. Loopback HTTP servers
started here play the operator's "internal service": each counts the connections it accepted, so a
refusal is shown to happen before any byte leaves. Only loopback is ever connected to; refusals of
link-local and private literals are checked without connecting (tests/unit/test_egress.py).
"""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from devstack.stack import DevStack
from executor.egress import EgressPolicy
from executor.runner import JobRunner
from executor.storage.base import InputUnavailable
from executor.storage.url import UrlStorage
from protocol.ipfs import KuboClient
from protocol.spec import JobSpec
from tests.executor.conftest import RunnerFactory, run, sh

SECRET = b"operator-only: db password hunter2\n"
KNOB = "(operator allow-list: COD_EGRESS_ALLOW)"
HELLO_WASM = wasmtime.wat2wasm("""(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from wasm\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 16))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))""")


class Internal:
    """A loopback HTTP server: `/secret` answers SECRET, `/module.wasm` a WASI module,
    `/to?URL` redirects to URL, `/drip-body` and `/drip-head` send one byte every 2 s."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.connections = 0
        self.paths: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def setup(self) -> None:
                owner.connections += 1
                super().setup()

            def do_GET(self) -> None:
                owner.paths.append(self.path)
                if self.path == "/secret":
                    self._send(SECRET)
                elif self.path == "/module.wasm":
                    self._send(bytes(HELLO_WASM))
                elif self.path.startswith("/to?"):
                    self.send_response(302)
                    self.send_header("Location", self.path[4:])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/drip-body":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
                    self._drip(100)
                elif self.path == "/drip-head":
                    self._drip(100, b"H")
                else:
                    self.send_error(404)

            def _send(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _drip(self, count: int, byte: bytes = b"x") -> None:
                stop = threading.Event()
                for _ in range(count):  # bounded: the handler ends even if nobody hangs up
                    try:
                        self.wfile.write(byte)
                        self.wfile.flush()
                    except OSError:
                        return
                    if stop.wait(2) or owner.closed.is_set():
                        return

            def log_message(self, *_args: object) -> None:
                pass

        self.closed = threading.Event()
        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.closed.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def internal() -> Iterator[Internal]:
    server = Internal()
    yield server
    server.close()


@pytest.fixture
def relay() -> Iterator[Internal]:
    """A second server, on 127.0.0.2: the "public" hop the operator allow-lists in these tests."""
    server = Internal("127.0.0.2")
    yield server
    server.close()


def fetch_job(url: str) -> JobSpec:
    return sh("cat /inputs/f", inputs=[{"source": url, "target": "/inputs/f"}])


@pytest.mark.parametrize(("host", "rule"), [
    ("127.0.0.1", "127.0.0.1 is a loopback address"),
    ("localhost", "localhost resolves to a loopback address"),
])
def test_an_input_url_on_loopback_is_refused_before_connecting(
        runner: JobRunner, internal: Internal, host: str, rule: str) -> None:
    url = f"http://{host}:{internal.port}/secret"
    outcome = run(runner, fetch_job(url))
    assert outcome.status == "failed"
    assert outcome.reason == f"input {url} refused: {rule} {KNOB}"
    assert outcome.result_cid is None
    assert internal.connections == 0 and internal.paths == []


def test_the_same_server_allow_listed_is_fetched(make_runner: RunnerFactory, kubo: KuboClient,
                                                  internal: Internal) -> None:
    """Positive control: the refusal above is the policy, not a broken fetch."""
    outcome = run(make_runner(egress_allow="127.0.0.1"), fetch_job(f"{internal.url}/secret"))
    assert outcome.status == "completed", outcome.reason
    assert kubo.cat(f"{outcome.result_cid}/stdout") == SECRET
    assert internal.paths == ["/secret"]


@pytest.mark.parametrize(("host", "rule"), [
    ("127.0.0.1", "127.0.0.1 is a loopback address"),
    ("localhost", "localhost resolves to a loopback address"),
])
def test_a_redirect_to_loopback_is_refused_at_the_hop(
        make_runner: RunnerFactory, relay: Internal, internal: Internal, host: str, rule: str) -> None:
    target = f"http://{host}:{internal.port}/secret"
    url = f"{relay.url}/to?{target}"
    outcome = run(make_runner(egress_allow="127.0.0.2"), fetch_job(url))
    assert outcome.status == "failed"
    assert outcome.reason == f"input {url} refused: redirect to {target}: {rule} {KNOB}"
    assert relay.paths == [f"/to?{target}"]  # the allowed hop was fetched ...
    assert internal.connections == 0  # ... the internal target never reached


def test_a_redirect_chain_is_capped(make_runner: RunnerFactory, internal: Internal) -> None:
    url = f"{internal.url}/secret"
    for _ in range(6):
        url = f"{internal.url}/to?{url}"
    outcome = run(make_runner(egress_allow="127.0.0.1"), fetch_job(url))
    assert outcome.reason == f"input {url} not available: more than 5 redirects"
    assert len(internal.paths) == 6 and "/secret" not in internal.paths


def test_the_nodes_own_ipfs_api_is_refused_even_when_loopback_is_allowed(
        make_runner: RunnerFactory, services: DevStack) -> None:
    api = services.env["COD_IPFS_API"]
    port = api.rsplit(":", 1)[1]
    outcome = run(make_runner(egress_allow="127.0.0.0/8"), fetch_job(f"{api}/api/v0/version"))
    assert outcome.status == "failed"
    assert outcome.reason == (f"input {api}/api/v0/version refused: 127.0.0.1:{port} is one of "
                              "this node's own services (never allowed)")


@pytest.mark.parametrize("path", ["/drip-body", "/drip-head"])
def test_a_slow_drip_is_cut_at_the_download_deadline(make_runner: RunnerFactory, internal: Internal,
                                                     path: str) -> None:
    """One byte every 2 s never trips a per-read timeout; the 3 s wall-clock deadline cuts it."""
    runner = make_runner(egress_allow="127.0.0.1", url_timeout_s=3)
    url = f"{internal.url}{path}"
    started = time.monotonic()
    outcome = run(runner, fetch_job(url))
    elapsed = time.monotonic() - started
    assert outcome.status == "failed"
    assert outcome.reason == f"input {url} exceeded the download deadline of 3 s"
    assert internal.paths == [path]
    assert 2.9 <= elapsed < 3 + 2.0, elapsed


def _wasm_job(image: str) -> JobSpec:
    return JobSpec(engine="wasm", image=image, entrypoint=["main"], cache=False)


def test_a_wasm_module_url_on_loopback_is_refused(runner: JobRunner, internal: Internal) -> None:
    url = f"{internal.url}/module.wasm"
    outcome = run(runner, _wasm_job(url))
    assert outcome.status == "failed"
    assert outcome.reason is not None
    assert outcome.reason.endswith(f"input {url} refused: 127.0.0.1 is a loopback address {KNOB}")
    assert internal.connections == 0


def test_a_wasm_module_redirected_to_loopback_is_refused(make_runner: RunnerFactory, relay: Internal,
                                                         internal: Internal) -> None:
    target = f"{internal.url}/module.wasm"
    outcome = run(make_runner(egress_allow="127.0.0.2"), _wasm_job(f"{relay.url}/to?{target}"))
    assert outcome.status == "failed"
    assert outcome.reason is not None and f"refused: redirect to {target}: " in outcome.reason
    assert internal.connections == 0


def test_an_allow_listed_wasm_module_url_runs(make_runner: RunnerFactory, kubo: KuboClient,
                                              internal: Internal) -> None:
    """Positive control for the WASM path: the same module, allow-listed, is fetched and run."""
    outcome = run(make_runner(egress_allow="127.0.0.1"), _wasm_job(f"{internal.url}/module.wasm"))
    assert outcome.status == "completed", outcome.reason
    assert kubo.cat(f"{outcome.result_cid}/stdout") == b"hello from wasm\n"



@pytest.fixture
def tls_internal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Internal]:
    """The internal server over TLS, its self-signed certificate (for `localhost`) trusted."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # read by httpx.create_ssl_context
    server = Internal()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    yield server
    server.close()


def test_https_is_checked_the_same_and_verified_against_the_host_name(
        tls_internal: Internal, tmp_path: Path) -> None:
    """The socket goes to the checked address while TLS (SNI, certificate) uses the URL's name."""
    url = f"https://localhost:{tls_internal.port}/secret"
    with pytest.raises(InputUnavailable) as refused:
        UrlStorage(1024, 10).fetch(url, tmp_path / "refused")
    assert str(refused.value) == f"input {url} refused: localhost resolves to a loopback address {KNOB}"
    assert tls_internal.connections == 0
    allowed = UrlStorage(1024, 10, EgressPolicy.from_settings("localhost", []))
    allowed.fetch(url, tmp_path / "fetched")
    assert (tmp_path / "fetched").read_bytes() == SECRET
