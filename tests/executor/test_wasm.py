"""The wasm engine (wasmtime, WASI): the same `/inputs` read-only, `/outputs` writable contract as a
container, a wall-clock timeout and a memory cap. Modules are written in WAT and compiled with
`wasmtime.wat2wasm`, so no toolchain is needed."""

from __future__ import annotations

import base64

import wasmtime

from executor.runner import JobRunner
from protocol.ipfs import KuboClient
from protocol.spec import JobSpec
from tests.executor.conftest import run

WASI = "wasi_snapshot_preview1"
IMPORTS = f"""
  (import "{WASI}" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "{WASI}" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "{WASI}" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "{WASI}" "proc_exit" (func $proc_exit (param i32)))
"""

# Reads /inputs/data.txt (preopen fd 3), writes it to stdout and to /outputs/copy.txt (fd 4), then
# tries to create /inputs/evil.txt, which must fail (exit 99 if it did not); a failed open exits
# with its errno.
COPY = f"""(module {IMPORTS}
  (memory (export "memory") 1)
  (data (i32.const 16) "data.txt") (data (i32.const 32) "copy.txt") (data (i32.const 48) "evil.txt")
  (func $open (param $dir i32) (param $name i32) (param $oflags i32) (param $rights i64)
    (result i32) (local $err i32)
    (local.set $err (call $path_open (local.get $dir) (i32.const 0) (local.get $name) (i32.const 8)
      (local.get $oflags) (local.get $rights) (local.get $rights) (i32.const 0) (i32.const 304)))
    (if (local.get $err) (then (call $proc_exit (local.get $err))))
    (i32.load (i32.const 304)))
  (func (export "_start") (local $in i32) (local $out i32) (local $err i32)
    (local.set $in (call $open (i32.const 3) (i32.const 16) (i32.const 0) (i64.const 2)))
    (i32.store (i32.const 200) (i32.const 1024))
    (i32.store (i32.const 204) (i32.const 512))
    (drop (call $fd_read (local.get $in) (i32.const 200) (i32.const 1) (i32.const 300)))
    (i32.store (i32.const 204) (i32.load (i32.const 300)))
    (drop (call $fd_write (i32.const 1) (i32.const 200) (i32.const 1) (i32.const 308)))
    (local.set $out (call $open (i32.const 4) (i32.const 32) (i32.const 9) (i64.const 0x1fffffff)))
    (drop (call $fd_write (local.get $out) (i32.const 200) (i32.const 1) (i32.const 308)))
    (local.set $err (call $path_open (i32.const 3) (i32.const 0) (i32.const 48) (i32.const 8)
      (i32.const 9) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 304)))
    (if (i32.eqz (local.get $err)) (then (call $proc_exit (i32.const 99))))
    (call $proc_exit (i32.const 0))))
"""

SPIN = """(module (memory (export "memory") 1)
  (func (export "_start") (loop $forever (br $forever))))"""

GREEDY = """(module (memory (export "memory") 1)
  (func (export "_start")
    (loop $more
      (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then unreachable))
      (br $more))))"""


def module(wat: str) -> str:
    return "data:application/wasm;base64," + base64.b64encode(wasmtime.wat2wasm(wat)).decode()


def wasm_job(wat: str, **fields: object) -> JobSpec:
    return JobSpec(engine="wasm", image=module(wat), cache=False, **fields)  # type: ignore[arg-type]


def test_wasm_reads_inputs_writes_outputs_and_cannot_write_inputs(
        runner: JobRunner, kubo: KuboClient) -> None:
    cid = kubo.add_bytes(b"from ipfs\n", "data.txt")
    outcome = run(runner, wasm_job(COPY, inputs=[{"source": f"ipfs://{cid}",
                                                  "target": "/inputs/data.txt"}]))
    assert outcome.status == "completed", outcome.reason
    assert outcome.exit_code == 0
    assert kubo.cat(f"{outcome.result_cid}/stdout") == b"from ipfs\n"
    assert kubo.cat(f"{outcome.result_cid}/outputs/copy.txt") == b"from ipfs\n"


def test_wasm_is_stopped_at_its_timeout(runner: JobRunner, kubo: KuboClient) -> None:
    outcome = run(runner, wasm_job(SPIN, timeout=1))
    assert outcome.exit_code == 124
    assert outcome.reason == "killed: exceeded the job timeout of 1 s"
    assert b"exceeded the job timeout" in kubo.cat(f"{outcome.result_cid}/stderr")


def test_wasm_memory_is_capped(runner: JobRunner) -> None:
    outcome = run(runner, wasm_job(GREEDY, resources={"memory": "16Mi"}, timeout=30))
    assert outcome.status == "completed"
    assert outcome.exit_code == 134
    assert outcome.reason is not None and outcome.reason.startswith("wasm trap:")


def test_not_a_wasm_module_fails_clearly(runner: JobRunner) -> None:
    outcome = run(runner, JobSpec(engine="wasm", image="data:;base64,AAAA"))
    assert outcome.status == "failed"
    assert outcome.reason is not None and outcome.reason.startswith("not a valid wasm module")
