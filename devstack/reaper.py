"""Stops a dev stack's services when the process that started them dies, however it died.

`DevStack` starts anvil, Kubo, Redis, workers and bridges each in a session of its own (so a test
can kill one with its children), which also means nothing kills them when the stack's process is
killed before it can stop them. The reaper is one small process per stack that watches the stack's
process; when it is gone, the reaper stops every process group listed in the stack's group file
(SIGTERM, then SIGKILL after a grace) and exits. A parent-death signal alone would not do: Linux
sends it when the *thread* that started a child exits, and tests start services from helper threads;
it reaches only the service itself, not its children (a worker's pool); and a service started just
as the stack dies may miss it. So services started from the main thread get one (SIGTERM, at once:
`devstack.stack._with_parent_death_signal`), and the reaper follows up on every group.

Run by `DevStack`: `python -m devstack.reaper PARENT_PID GROUP_FILE`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

POLL_S = 0.5
GRACE_S = 5.0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def groups(group_file: Path) -> list[int]:
    """The process groups the stack started (one per line), newest last."""
    try:
        text = group_file.read_text()
    except FileNotFoundError:
        return []
    return [int(line) for line in text.split() if line.isdigit()]


def stop_groups(pgids: list[int], grace_s: float = GRACE_S) -> None:
    """SIGTERM every group, newest first; SIGKILL what is left after `grace_s`."""
    for pgid in reversed(pgids):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(alive(pgid) for pgid in pgids):
        time.sleep(0.1)
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def watch(parent: int, group_file: Path) -> None:
    while alive(parent) and os.getppid() == parent:
        time.sleep(POLL_S)
    stop_groups(groups(group_file))


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a ^C to the stack's terminal is the stack's
    watch(int(sys.argv[1]), Path(sys.argv[2]))
