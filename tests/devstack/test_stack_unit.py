"""DevStack's bookkeeping without starting a service: the compute nodes it starts, the group file
its reaper reads, the parent-death signal its services get, and `cod data --node`'s lookup."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cod.cli.data import node_ipfs_apis
from devstack.reaper import groups
from devstack.stack import DevStack, DevStackError, _with_parent_death_signal


def test_compute_nodes_are_named_node_1_to_n(tmp_path: Path) -> None:
    assert DevStack(tmp_path).worker_ids() == ("node-1",)
    assert DevStack(tmp_path, compute_nodes=3).worker_ids() == ("node-1", "node-2", "node-3")
    with pytest.raises(DevStackError):
        DevStack(tmp_path, compute_nodes=0).worker_ids()


def test_node_ipfs_apis_parses_what_devstack_exports() -> None:
    text = "node-1=http://127.0.0.1:5001, node-2=http://127.0.0.1:40123,,bad"
    assert node_ipfs_apis(text) == {"node-1": "http://127.0.0.1:5001",
                                    "node-2": "http://127.0.0.1:40123"}
    assert node_ipfs_apis("") == {}


def test_the_group_file_lists_only_services_not_stopped(tmp_path: Path) -> None:
    stack = DevStack(tmp_path / "stack")
    stack.logs.mkdir(parents=True)
    first = stack._spawn("one", ["sleep", "60"])
    second = stack._spawn("two", ["sleep", "60"])
    try:
        assert groups(stack.state_dir / "groups") == [first.pid, second.pid]
        stack.stop_process("one")  # its pid may be reused: the reaper must not signal it
        assert groups(stack.state_dir / "groups") == [second.pid]
    finally:
        stack.stop()
    assert groups(stack.state_dir / "groups") == []


def test_services_started_from_the_main_thread_get_a_parent_death_signal() -> None:
    wrapped = _with_parent_death_signal(["redis-server", "x.conf"])
    assert wrapped[-3:] == ["--", "redis-server", "x.conf"] and "--pdeathsig" in wrapped
    from_thread: list[list[str]] = []
    thread = threading.Thread(target=lambda: from_thread.append(
        _with_parent_death_signal(["redis-server"])))
    thread.start()
    thread.join()
    # the signal would come when that helper thread exits, not when the stack does
    assert from_thread == [["redis-server"]]


def test_the_wrapped_command_keeps_its_pid_and_signal_setting() -> None:
    # setpriv execs the service: the pid DevStack records (and signals) is the service's own
    args = _with_parent_death_signal(
        [sys.executable, "-c", "import os; print(os.getpid(), flush=True)"])
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    out, _ = process.communicate(timeout=30)
    assert int(out) == process.pid
