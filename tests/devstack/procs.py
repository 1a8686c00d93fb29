"""`cod devstack` run as a user runs it (a subprocess), and the processes it leaves, found by
ancestry and by its own state directory (other stacks run on this machine: never by name)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

COD = str(Path(sys.executable).parent / "cod")
ROOT = Path(__file__).resolve().parents[2]

Proc = tuple[int, int]  # (pid, start time in clock ticks): a pid, not reused since


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, None if it is gone (or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the name, in parentheses, may hold spaces
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[19])


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(root: int) -> set[Proc]:
    children: dict[int, list[Proc]] = {}
    for pid in _pids():
        stat = _stat(pid)
        if stat is not None:
            children.setdefault(stat[0], []).append((pid, stat[1]))
    found: set[Proc] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child[0])
    return found


def alive(proc: Proc) -> bool:
    stat = _stat(proc[0])
    return stat is not None and stat[1] == proc[1]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def mentioning(text: str) -> set[int]:
    """Live processes whose command line or environment names `text` (a state directory)."""
    found = set()
    for pid in _pids():
        if pid == os.getpid():
            continue
        try:
            blob = (Path(f"/proc/{pid}/cmdline").read_bytes()
                    + Path(f"/proc/{pid}/environ").read_bytes())
        except OSError:
            continue
        if text.encode() in blob and _stat(pid) is not None:
            found.add(pid)
    return found


def wait_gone(procs: set[Proc], state_dir: Path, timeout: float = 30) -> None:
    """Until none of `procs` lives and no process names `state_dir` (Redis rewrites its command
    line, anvil's names no directory: hence `procs`, found by ancestry); fails with what is
    left."""
    deadline = time.monotonic() + timeout
    while True:
        left = {p for p in procs if alive(p)}
        named = mentioning(str(state_dir))
        if not left and not named:
            return
        if time.monotonic() > deadline:
            raise AssertionError("left running: " + "; ".join(
                f"{pid}: {cmdline(pid)[:120]}" for pid in sorted({p for p, _ in left} | named)))
        time.sleep(0.2)


def clean_env() -> dict[str, str]:
    """This environment without `COD_*` (a session stack's variables must not leak in)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("COD_")}


@dataclass
class Devstack:
    process: subprocess.Popen[str]
    state_dir: Path
    lines: list[str] = field(default_factory=list)
    started: set[Proc] = field(default_factory=set)  # its processes once it was up

    def env(self) -> dict[str, str]:
        """The `COD_*` variables it exported (its `env` file)."""
        pairs = (line.removeprefix("export ").split("=", 1)
                 for line in (self.state_dir / "env").read_text().splitlines())
        return {name: value for name, value in pairs}

    def wait_for_line(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.process.poll() is not None and not any(text in ln for ln in self.lines):
                time.sleep(0.5)  # the reader thread may still hold the last lines
                if not any(text in line for line in self.lines):
                    raise AssertionError(f"cod devstack exited with {self.process.returncode}:\n"
                                         + "".join(self.lines[-40:]) + self.logs())
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s:\n" + self.logs()
            time.sleep(0.2)

    def logs(self) -> str:
        logs = self.state_dir / "logs"
        return "".join(f"\n--- {log.name}:\n{log.read_text(errors='replace')[-1500:]}"
                       for log in sorted(logs.glob("*.log"))) if logs.exists() else ""

    def services(self) -> set[Proc]:
        return descendants(self.process.pid)


@contextmanager
def devstack(state_dir: Path, *args: str, env: dict[str, str] | None = None
             ) -> Iterator[Devstack]:
    """`cod devstack --state-dir STATE_DIR --random-ports ARGS…`, up ("devstack ready"); killed
    (and its services waited for) on the way out whatever the test did to it."""
    process = subprocess.Popen(
        [COD, "devstack", "--state-dir", str(state_dir), "--random-ports", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env={**clean_env(), **(env or {})})
    stack = Devstack(process, state_dir.resolve())

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            stack.lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        stack.wait_for_line("devstack ready", timeout=300)
        stack.started = stack.services()
        yield stack
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # as Ctrl-C: it stops everything it started
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        try:
            wait_gone(stack.started, stack.state_dir, timeout=60)
        finally:  # a failed test leaks nothing: what is left is killed by pid, then reported
            for proc in [p for p in stack.started if alive(p)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc[0], signal.SIGKILL)
