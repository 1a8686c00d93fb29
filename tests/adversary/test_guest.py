"""Containers and WASM modules are guests: an unprivileged uid, no engine-control variables from
the spec, WASM stores limited in tables, memories and instances, compile time bounded, and two
attempts of one job on one node kept apart. Real Docker, wasmtime, Kubo and Redis."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

import pytest
import wasmtime

from executor.engines.base import Mount, RunRequest
from executor.engines.docker_engine import Limits, container_args
from executor.runner import JobRunner
from executor.tasks import attempt_of
from protocol.ipfs import KuboClient
from protocol.outcome import JobOutcome
from protocol.spec import JobSpec
from tests.executor.conftest import RunnerFactory, run, sh

MiB = 1024 * 1024


def test_a_container_runs_as_an_unprivileged_user(runner: JobRunner, kubo: KuboClient) -> None:
    cid = kubo.add_bytes(b"readable\n", "data.txt")
    outcome = run(runner, sh("id -u; id -g; cat /inputs/data.txt; echo w > /outputs/o && echo wrote",
                             inputs=[{"source": f"ipfs://{cid}", "target": "/inputs/data.txt"}]))
    assert outcome.status == "completed", outcome.reason
    assert kubo.cat(f"{outcome.result_cid}/stdout").decode().split() == [
        "65534", "65534", "readable", "wrote"]


@pytest.mark.parametrize("name", ["NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
                                  "nvidia_visible_devices", "AMD_VISIBLE_DEVICES"])
def test_a_spec_setting_engine_control_variables_is_refused(runner: JobRunner, name: str) -> None:
    outcome = run(runner, sh("echo ran", env={name: "all", "HARMLESS": "1"}))
    assert outcome.status == "failed"
    assert outcome.reason == (f"env: {name} may not be set by a job: the node controls the "
                              "container runtime's devices (use resources.gpu)")


def test_two_attempts_of_one_job_on_one_node_do_not_share_a_directory_or_container(
        runner: JobRunner, kubo: KuboClient) -> None:
    # the bridge re-dispatches a job (attempt 2) while attempt 1 still runs on the same node;
    # Celery's retry count is 0 for both
    key = f"test:attempts:{time.time_ns()}"
    attempts = [attempt_of(f"{key}:{n}", retries=0) for n in (1, 2)]
    assert attempts == ["1", "2"]
    script = "echo $(hostname) > /outputs/mine; sleep 2; ls /outputs | wc -l; cat /outputs/mine"
    outcomes: dict[str, JobOutcome] = {}

    def attempt(number: str) -> None:
        outcomes[number] = runner.run(key, sh(script).to_json(), attempt=number)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in attempts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes) == attempts
    seen = []
    for outcome in outcomes.values():
        assert outcome.status == "completed", outcome.reason
        count, host = kubo.cat(f"{outcome.result_cid}/stdout").decode().split()
        assert count == "1"
        seen.append(host)
    assert len(set(seen)) == 2  # two containers


def test_attempt_falls_back_to_celerys_retry_count() -> None:
    assert attempt_of("chain:0xabc:7:3", retries=1) == "3"
    assert attempt_of("a-task-id-without-attempt", retries=4) == "4"
    assert attempt_of(None, retries=0) == "0"
    assert attempt_of("job:x", retries=2) == "2"


def module(wat: str) -> str:
    return "data:application/wasm;base64," + base64.b64encode(wasmtime.wat2wasm(wat)).decode()


def wasm_job(wat: str, **fields: object) -> JobSpec:
    return JobSpec(engine="wasm", image=module(wat), cache=False, **fields)  # type: ignore[arg-type]


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def peak_growth_mib(action: object) -> float:
    """How far the process's resident memory rose above its level before `action` ran."""
    Path("/proc/self/clear_refs").write_text("5")  # resets the high-water mark (VmHWM)
    before = rss_kib("VmRSS")
    assert callable(action)
    action()
    return (rss_kib("VmHWM") - before) / 1024


# 40 growths of a million elements, each filled (so the pages are real): ~320 MiB unlimited
TABLE_BOMB = """(module
  (table $t 1 funcref)
  (func $f)
  (elem declare func $f)
  (func (export "_start") (local $i i32) (local $old i32)
    (loop $more
      (local.set $old (table.grow $t (ref.null func) (i32.const 1000000)))
      (if (i32.eq (local.get $old) (i32.const -1)) (then unreachable))
      (table.fill $t (local.get $old) (ref.func $f) (i32.const 1000000))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (i32.const 40))))))"""


def memories_bomb(count: int) -> str:
    """`count` memories of 64 MiB each (each within a 64 MiB limit), every one filled."""
    memories = "".join(f"(memory $m{i} 1024)" for i in range(count))
    fills = "".join(f"(memory.fill $m{i} (i32.const 0) (i32.const 1) (i32.const {64 * MiB}))"
                    for i in range(count))
    return f'(module {memories} (func (export "_start") {fills}))'


def test_wasm_table_growth_is_capped_and_does_not_take_the_workers_memory(
        runner: JobRunner) -> None:
    outcomes: list[JobOutcome] = []
    growth = peak_growth_mib(lambda: outcomes.append(run(runner, wasm_job(
        TABLE_BOMB, resources={"memory": "64Mi"}))))
    (outcome,) = outcomes
    assert outcome.status == "completed", outcome.reason
    assert outcome.exit_code == 134
    assert outcome.reason is not None and outcome.reason.startswith("wasm trap:")
    assert growth < 64, f"the worker grew by {growth:.0f} MiB"


def test_wasm_multiple_memories_are_refused_and_do_not_take_the_workers_memory(
        runner: JobRunner) -> None:
    outcomes: list[JobOutcome] = []
    growth = peak_growth_mib(lambda: outcomes.append(run(runner, wasm_job(
        memories_bomb(8), resources={"memory": "64Mi"}))))
    (outcome,) = outcomes
    assert outcome.status == "completed", outcome.reason
    assert outcome.exit_code == 134
    assert outcome.reason is not None and outcome.reason.startswith("wasm error:")
    assert "memor" in outcome.reason
    assert growth < 64, f"the worker grew by {growth:.0f} MiB"
    one = run(runner, wasm_job(memories_bomb(1), resources={"memory": "96Mi"}))  # the honest case
    assert one.status == "completed" and one.exit_code == 0, one.reason


def compile_bomb(functions: int) -> str:
    """Functions of 45,000 live locals each: Cranelift's register allocation is superlinear in
    them (about 3 s of CPU per function here, from 740 KB of code)."""
    n = 45_000
    sets = "".join(f"(local.set {i} (i64.add (local.get {i}) (local.get {(i * 7919) % n})))"
                   for i in range(n))
    body = f"(local {'i64 ' * n})(loop $l {sets}(br_if $l (i32.const 0)))"
    funcs = "".join(f"(func {body})" for _ in range(functions))
    return f'(module {funcs} (func (export "_start")))'


def ipfs_module(kubo: KuboClient, wat: str) -> JobSpec:
    cid = kubo.add_bytes(bytes(wasmtime.wat2wasm(wat)), "module.wasm")
    return JobSpec(engine="wasm", image=f"ipfs://{cid}", cache=False)


def test_wasm_compile_time_is_bounded(make_runner: RunnerFactory, kubo: KuboClient) -> None:
    spec = ipfs_module(kubo, compile_bomb(6))
    started = time.monotonic()
    outcome = run(make_runner(wasm_compile_timeout_s=2), spec)
    assert outcome.status == "failed"
    assert outcome.reason == ("the wasm module did not compile within the node's limit of 2 s "
                              "(wasm_compile_timeout_s)")
    assert time.monotonic() - started < 8


def test_a_wasm_module_over_the_size_cap_is_refused(make_runner: RunnerFactory,
                                                     kubo: KuboClient) -> None:
    outcome = run(make_runner(wasm_max_module_size="64Ki"), ipfs_module(kubo, compile_bomb(1)))
    assert outcome.status == "failed"
    assert outcome.reason is not None
    assert outcome.reason.endswith(f"over the node's cap of {64 * 1024} bytes (wasm_max_module_size)")


def test_container_args_cover_image_volumes_and_run_as_the_node_user(tmp_path: Path) -> None:
    spec = JobSpec(image="img")
    request = RunRequest(name="n", spec=spec, mounts=[Mount(tmp_path, "/outputs", read_only=False)],
                         stdout=tmp_path / "o", stderr=tmp_path / "e", job_dir=tmp_path)
    args = container_args(request, Limits(volume_bytes=1024), ["/data", "/outputs", "/tmp", "/x/"])
    assert args["user"] == "65534:65534"
    assert set(args["tmpfs"]) == {"/tmp", "/data", "/x"}  # /outputs is the job's own mount
    assert "size=1024" in args["tmpfs"]["/data"]
    assert "user" not in container_args(request, Limits(user=""))
