"""A real `cod api` process (uvicorn) over a stack, with settings of the test's choosing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from devstack.stack import DevStack, free_port


@contextmanager
def running_api(stack: DevStack, env: dict[str, str] | None = None, drop: tuple[str, ...] = (),
                name: str = "api", healthy: bool = True) -> Iterator[str]:
    """`cod api` on a free port with `stack.env` plus `env`, without the variables in `drop`.
    Waits until `/healthz` answers (200 when `healthy`, any status otherwise); yields its URL."""
    port = free_port()
    full = {**os.environ, **stack.env, **(env or {})}
    for key in drop:
        full.pop(key, None)
    log = (stack.logs / f"{name}.log").open("ab")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "cod"), "api", "--port", str(port)],
        env=full, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"cod api exited: see {stack.logs / f'{name}.log'}"
            try:
                status = httpx.get(f"{url}/healthz", timeout=5).status_code
                if status == 200 or not healthy:
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
