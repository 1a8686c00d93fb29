"""Inputs behind one interface: IPFS (files and directories), http(s) URLs, inline data; large
inputs are streamed, not held in memory."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import DevStack
from executor.runner import JobRunner
from protocol.ipfs import KuboClient
from tests.executor.conftest import RunnerFactory, run, sh

GiB = 1024**3


class _Handler(http.server.BaseHTTPRequestHandler):
    """`/zeros/N` streams N zero bytes; `/text` says hello; anything else is a 404."""

    def do_GET(self) -> None:
        if self.path.startswith("/zeros/"):
            size = int(self.path.rsplit("/", 1)[1])
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            block = bytes(1024 * 1024)
            while size > 0:
                self.wfile.write(block[: min(size, len(block))])
                size -= len(block)
        elif self.path == "/text":
            body = b"hello from a URL\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_input_is_mounted_read_only(make_runner: RunnerFactory, kubo: KuboClient, http_url: str
                                        ) -> None:
    runner = make_runner(egress_allow="127.0.0.1")  # the test server is on loopback (executor.egress)
    spec = sh("cat /inputs/t.txt", inputs=[{"source": f"{http_url}/text", "target": "/inputs/t.txt"}])
    outcome = run(runner, spec)
    assert kubo.cat(f"{outcome.result_cid}/stdout") == b"hello from a URL\n"


def test_url_input_over_the_size_cap_or_missing_fails_clearly(
        make_runner: RunnerFactory, http_url: str) -> None:
    runner = make_runner(url_max_size="1Mi", egress_allow="127.0.0.1")
    big = run(runner, sh("true", inputs=[{"source": f"{http_url}/zeros/{2 * 1024**2}",
                                          "target": "/inputs/z"}]))
    assert big.status == "failed"
    assert big.reason == (f"input {http_url}/zeros/{2 * 1024**2} is larger than the node's URL "
                          "input cap of 1048576 bytes")
    missing = run(runner, sh("true", inputs=[{"source": f"{http_url}/nope", "target": "/inputs/n"}]))
    assert missing.status == "failed"
    assert missing.reason == f"input {http_url}/nope not available: HTTP 404"


def test_inline_input(runner: JobRunner, kubo: KuboClient) -> None:
    spec = sh("cat /inputs/a /inputs/b", inputs=[
        {"source": "data:,plain%20text%0A", "target": "/inputs/a"},
        {"source": "data:;base64,YmFzZTY0Cg==", "target": "/inputs/b"},
    ])
    assert kubo.cat(f"{run(runner, spec).result_cid}/stdout") == b"plain text\nbase64\n"


def test_ipfs_directory_input(runner: JobRunner, kubo: KuboClient, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("A\n")
    (tree / "sub" / "b.txt").write_text("B\n")
    cid = kubo.add_path(tree)
    spec = sh("cat /inputs/d/a.txt /inputs/d/sub/b.txt; touch /inputs/d/x || echo ro",
              inputs=[{"source": f"ipfs://{cid}", "target": "/inputs/d"}])
    out = kubo.cat(f"{run(runner, spec).result_cid}/stdout").decode()
    assert out.startswith("A\nB\n") and out.endswith("ro\n")


_MEASURE = """
import json, resource, sys
from pathlib import Path
from protocol.ipfs import KuboClient
from executor.storage.ipfs import IpfsStorage
from executor.egress import EgressPolicy
from executor.storage.url import UrlStorage
kind, source, dest, api = sys.argv[1:5]
provider = (UrlStorage(2 * 1024**3, 300, EgressPolicy.from_settings("127.0.0.1", [])) if kind == "url"
            else IpfsStorage(KuboClient(api), 300))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
provider.fetch(source, Path(dest))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grew_kib": after - before, "size": Path(dest).stat().st_size}))
"""


def _fetch_in_fresh_process(kind: str, source: str, dest: Path, api: str) -> dict[str, int]:
    output = subprocess.run([sys.executable, "-c", _MEASURE, kind, source, str(dest), api],
                            check=True, capture_output=True, text=True, timeout=300).stdout
    result: dict[str, int] = json.loads(output)
    return result


def test_a_1gib_input_is_streamed_not_held_in_memory(
        services: DevStack, kubo: KuboClient, http_url: str, tmp_path: Path) -> None:
    api = services.env["COD_IPFS_API"]
    url = _fetch_in_fresh_process("url", f"{http_url}/zeros/{GiB}", tmp_path / "u", api)
    assert url["size"] == GiB
    (tmp_path / "u").unlink()
    print(f"\n1 GiB URL input: peak RSS grew {url['grew_kib']} KiB")
    assert url["grew_kib"] < 40 * 1024, url  # peak memory grew by less than 40 MiB

    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        handle.truncate(GiB)  # zeros: Kubo stores one block, but streams the whole GiB back
    cid = kubo.add_path(big)
    big.unlink()
    ipfs = _fetch_in_fresh_process("ipfs", f"ipfs://{cid}", tmp_path / "i", api)
    assert ipfs["size"] == GiB
    print(f"1 GiB IPFS input: peak RSS grew {ipfs['grew_kib']} KiB")
    assert ipfs["grew_kib"] < 40 * 1024, ipfs
