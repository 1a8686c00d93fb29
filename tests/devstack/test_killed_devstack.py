"""`cod devstack` killed with SIGKILL (nothing of it runs after: no `stop`, no signal handler)
leaves nothing behind: not anvil, Redis, any Kubo, a worker (or its pool) or the bridge. Its services
get a parent-death signal at once, and its reaper stops every process group it started; either is
enough. The processes are found by ancestry and by the stack's own state directory."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.devstack.procs import Proc, alive, cmdline, devstack, wait_gone


def kinds(procs: set[Proc]) -> str:
    return " | ".join(cmdline(pid) for pid, _ in procs)


def test_a_killed_devstack_with_two_nodes_leaves_nothing_running(tmp_path: Path) -> None:
    with devstack(tmp_path / "stack", "--nodes", "2") as stack:
        services = stack.services()
        started = kinds(services)
        for what in ("anvil", "redis-server", "ipfs daemon", "cod.cli worker", "cod.cli bridge",
                     "devstack.reaper"):
            assert what in started, f"{what} not among {started}"
        assert started.count("ipfs daemon") == 3  # the stack's Kubo and each node's own

        os.kill(stack.process.pid, signal.SIGKILL)
        stack.process.wait(timeout=10)
        wait_gone(services, stack.state_dir)


def test_killed_while_stopping_and_without_its_reaper_leaves_nothing(tmp_path: Path) -> None:
    """The worst case: the reaper is gone too, and the stack is killed part way through stopping
    (after Ctrl-C): the parent-death signal alone stops what it had not stopped yet."""
    with devstack(tmp_path / "stack") as stack:
        services = stack.services()
        reaper = next(p for p in services if "devstack.reaper" in cmdline(p[0]))
        os.kill(reaper[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while alive(reaper):
            assert time.monotonic() < deadline
            time.sleep(0.1)

        stack.process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 60  # until stopping is under way: a service has gone
        while all(alive(p) for p in services if p != reaper):
            assert time.monotonic() < deadline, "the stack did not start stopping"
            time.sleep(0.05)
        os.kill(stack.process.pid, signal.SIGKILL)
        stack.process.wait(timeout=10)
        wait_gone(services, stack.state_dir)
