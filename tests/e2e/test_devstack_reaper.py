"""A dev stack killed with SIGKILL (no `stop`, no cleanup code runs) leaves no service behind: its
reaper stops Kubo and Redis (and anvil, workers, bridges alike) once the stack's process is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devstack.reaper import alive, groups

STACK = """
import sys, time
from pathlib import Path
from devstack.stack import DevStack
DevStack(Path(sys.argv[1]), with_chain=False, with_worker=False, with_bridge=False,
         preferred_ports=False).start()
print("up", flush=True)
time.sleep(600)
"""


def test_a_killed_stack_leaves_no_service_running(tmp_path: Path) -> None:
    state = tmp_path / "stack"
    owner = subprocess.Popen([sys.executable, "-c", STACK, str(state)], stdout=subprocess.PIPE,
                             text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "up"
        started = groups(state / "groups")
        assert len(started) >= 2 and all(alive(pgid) for pgid in started)  # Kubo, Redis

        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(timeout=10)
        deadline = time.monotonic() + 20
        while any(alive(pgid) for pgid in started) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [pgid for pgid in started if alive(pgid)] == []
    finally:
        if owner.poll() is None:
            owner.kill()
