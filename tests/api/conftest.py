"""A real `cod api` server (uvicorn, in its own process) over the session's stack."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bridge.devstack import DevStack, free_port


@pytest.fixture(scope="session")
def api_url(stack: DevStack) -> Iterator[str]:
    port = free_port()
    log = (stack.logs / "api.log").open("ab")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "cod"), "api", "--port", str(port)],
        env={**os.environ, **stack.env}, stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"cod api exited: see {stack.logs / 'api.log'}"
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "cod api did not come up in 30 s"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
