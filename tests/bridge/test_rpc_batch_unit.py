"""`rpc_batch`: many JSON-RPC calls in one HTTP POST, against a local HTTP server standing in for a
node: answers matched by id whatever their order, an error object is that call's alone."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from web3 import Web3

from bridge.chain import RpcError, rpc_batch


class Node:
    def __init__(self) -> None:
        self.posts: list[Any] = []
        node = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                node.posts.append(request)
                answers = [{"jsonrpc": "2.0", "id": call["id"], "error": {
                    "code": 3, "message": "execution reverted"}}
                    if call["params"] == ["bad"] else
                    {"jsonrpc": "2.0", "id": call["id"], "result": call["params"][0]}
                    for call in request]
                data = json.dumps(list(reversed(answers))).encode()  # any order
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def node() -> Iterator[Node]:
    started = Node()
    yield started
    started.server.shutdown()


def test_calls_go_in_one_post_and_each_gets_its_own_answer(node: Node) -> None:
    w3 = Web3(Web3.HTTPProvider(node.url))

    answers = rpc_batch(w3, [("echo", ["a"]), ("echo", ["bad"]), ("echo", ["c"])])

    assert len(node.posts) == 1 and len(node.posts[0]) == 3
    assert answers[0] == "a" and answers[2] == "c"
    assert isinstance(answers[1], RpcError) and "execution reverted" in str(answers[1])
    assert answers[1].code == 3
    assert rpc_batch(w3, []) == [] and len(node.posts) == 1  # nothing to ask: no request
