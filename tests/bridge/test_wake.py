"""What wakes the bridge (bridge.wake), against the real things: anvil's newHeads subscription (and
the polling fallback), and Celery's Redis result backend publishing the states a worker stores."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from bridge.wake import MAX_PUSHED, HeadWatcher, ResultWatcher, Wakeup, ws_url_of
from devstack.stack import free_port
from protocol.messaging import make_app
from tests.services import Chain

DEADLINE_S = 30.0  # generous: a loaded 2-core machine


def wait_for(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def redis_url() -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen([shutil.which("redis-server") or "/usr/bin/redis-server",
                               "--port", str(port), "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for("redis", lambda: _pings(url))
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def _pings(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.ConnectionError:
        return False


def test_ws_url_is_the_rpc_url_on_the_websocket_scheme() -> None:
    assert ws_url_of("http://127.0.0.1:8545") == "ws://127.0.0.1:8545"
    assert ws_url_of("https://rpc.example/v1/key") == "wss://rpc.example/v1/key"
    assert ws_url_of("ipc:///tmp/geth.ipc") is None


@pytest.mark.parametrize("subscribe", [True, False], ids=["subscription", "polling"])
def test_a_new_head_wakes_the_loop(chain: Chain, subscribe: bool) -> None:
    wake = Wakeup()
    watcher = HeadWatcher(wake, chain.url, None if subscribe else "", poll_s=0.05)
    watcher.start()
    try:
        if subscribe:
            wait_for("the subscription", lambda: watcher.subscribed)
        else:
            assert wake.wait(DEADLINE_S)  # the polling watcher's first read of the head
            assert not watcher.subscribed
        assert not wake.wait(0.5)  # no block, no poke (anvil mines on demand here)
        chain.mine()
        assert wake.wait(DEADLINE_S)
    finally:
        watcher.stop()


def test_a_stored_result_is_pushed_with_its_task_id(redis_url: str) -> None:
    wake = Wakeup()
    watcher = ResultWatcher(wake, redis_url)
    watcher.start()
    try:
        wait_for("the result subscription", lambda: wake.pushes_on)
        assert wake.changed_tasks() is None  # the first pass looks at every job
        backend = make_app(redis_url).backend
        backend.store_result("task-started", None, "STARTED")  # what a worker stores
        backend.store_result("task-done", {"ok": True}, "SUCCESS")
        pushed: set[str] = set()

        def both_pushed() -> bool:
            wake.wait(0.2)
            pushed.update(wake.changed_tasks() or set())
            return pushed == {"task-started", "task-done"}

        wait_for("both results to be pushed", both_pushed)
    finally:
        watcher.stop()
    wait_for("the watcher to stop", lambda: not wake.pushes_on)
    assert wake.changed_tasks() is None  # no pushes: every pass looks at every job


def test_a_flood_of_pushes_turns_into_one_sweep() -> None:
    wake = Wakeup()
    wake.pushes_on = True
    assert wake.changed_tasks() is None  # the first pass sweeps
    for n in range(MAX_PUSHED + 1):
        wake.task_changed(f"task-{n}")
    assert wake.wait(0)
    assert wake.changed_tasks() is None  # too many to list: look at all of them
    wake.task_changed("one")
    assert wake.changed_tasks() == {"one"}
