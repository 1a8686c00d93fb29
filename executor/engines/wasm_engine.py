"""Runs a WASI command module with wasmtime, with the same contract as a container.

- `image` is the module, fetched like an input (`ipfs://CID`, `https://…`, `data:…`); its digest
  is the sha256 of its bytes. `entrypoint` is the argv (`_start` is called), `env` the environment.
- Inputs are preopened read-only at their targets, outputs writable; nothing else of the host is
  visible, and WASI (preview 1) has no sockets: there is no network.
- Time is bounded by epoch interruption (wall clock, checked every 50 ms); the store is limited to
  one linear memory of `resources.memory`, a few tables of bounded size and a few instances (each
  memory and table would otherwise be allocated on the worker, whatever `resources.memory` says);
  stdout and stderr go to files, capped like a container's.
- Compiling is bounded too: a module size cap, and compilation in a child process with a
  timeout and memory limits (`wasm_compile`); the last few compiled modules are kept by digest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import wasmtime

from executor.engines.base import (
    EXIT_TIMEOUT,
    EngineError,
    ImageUnavailable,
    Mount,
    RunOutcome,
    RunRequest,
)
from executor.engines.wasm_compile import engine_config
from executor.storage import InputUnavailable, StorageRegistry
from protocol.spec import JobSpec, parse_size

if TYPE_CHECKING:
    from executor.config import WorkerSettings

TICK_S = 0.05
EXIT_TRAP = 134  # what an aborted native program reports (128 + SIGABRT)
MODULE_FILE = "module.wasm"
COMPILED_FILE = "module.cwasm"
# Store limits besides linear memory. Real modules declare one table of a few thousand functions;
# 100,000 elements is about 1 MiB of the worker's memory.
TABLE_ELEMENTS = 100_000
TABLES = 4
INSTANCES = 4
MEMORIES = 1  # memory_size limits each memory: a second one would double what the job may take
COMPILED_KEPT = 8


def from_settings(settings: WorkerSettings, storage: StorageRegistry) -> WasmEngine:
    """The `wasm` engine of `executor.engines.ENGINES`: it fetches modules like inputs."""
    return WasmEngine(storage, parse_size(settings.log_limit),
                      parse_size(settings.wasm_max_module_size), settings.wasm_compile_timeout_s)


class WasmEngine:
    def __init__(self, storage: StorageRegistry, log_bytes: int = 10 * 1024 * 1024,
                 max_module_bytes: int = 64 * 1024 * 1024, compile_timeout_s: float = 60.0) -> None:
        self._storage = storage
        self._log_bytes = log_bytes
        self._max_module_bytes = max_module_bytes
        self._compile_timeout_s = compile_timeout_s
        self._compiled: OrderedDict[str, wasmtime.Module] = OrderedDict()
        self._engine = wasmtime.Engine(engine_config())
        self._ticker = threading.Thread(target=self._tick, daemon=True, name="wasm-epoch")
        self._ticker.start()

    def _tick(self) -> None:
        stop = threading.Event()
        while not stop.wait(TICK_S):
            self._engine.increment_epoch()

    def prepare(self, spec: JobSpec, job_dir: Path) -> str:
        """Fetch the module into the job directory; returns the sha256 of its bytes. Raises
        EngineError for a module over the node's size cap."""
        path = job_dir / MODULE_FILE
        if not path.exists():
            try:
                self._storage.for_source(spec.image).fetch(spec.image, path)
            except InputUnavailable as exc:
                raise ImageUnavailable(f"wasm module not available: {exc}") from exc
        size = path.stat().st_size
        if size > self._max_module_bytes:
            raise EngineError(f"the wasm module is {size} bytes, over the node's cap of "
                              f"{self._max_module_bytes} bytes (wasm_max_module_size)")
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        return f"sha256:{digest.hexdigest()}"

    def run(self, request: RunRequest) -> RunOutcome:
        spec = request.spec
        module = self._compile(self.prepare(spec, request.job_dir), request.job_dir)
        store = wasmtime.Store(self._engine)
        store.set_limits(memory_size=spec.resources.memory_bytes, table_elements=TABLE_ELEMENTS,
                         instances=INSTANCES, tables=TABLES, memories=MEMORIES)
        wasi = wasmtime.WasiConfig()
        wasi.argv = spec.entrypoint or ["main"]
        wasi.env = [[name, value] for name, value in spec.env.items()]
        wasi.stdout_file = str(request.stdout)
        wasi.stderr_file = str(request.stderr)
        for host, guest, writable in _preopens(request.mounts, _views_dir(request)):
            wasi.preopen_dir(str(host), guest, fs_mutable=writable)
        store.set_wasi(wasi)
        linker = wasmtime.Linker(self._engine)
        linker.define_wasi()
        store.set_epoch_deadline(max(1, round(spec.timeout / TICK_S)))
        exit_code, reason = 0, None
        try:
            instance = linker.instantiate(store, module)
            start = instance.exports(store)["_start"]
            if not isinstance(start, wasmtime.Func):
                raise EngineError("the wasm module exports no `_start` function (not a WASI command)")
            start(store)
        except wasmtime.ExitTrap as exc:
            exit_code = exc.code
        except wasmtime.Trap as exc:
            if exc.trap_code == wasmtime.TrapCode.INTERRUPT:
                exit_code, reason = EXIT_TIMEOUT, f"killed: exceeded the job timeout of {spec.timeout} s"
            else:
                exit_code, reason = EXIT_TRAP, f"wasm trap: {_first_line(exc)}"
        except wasmtime.WasmtimeError as exc:  # e.g. an instantiation beyond the memory limit
            exit_code, reason = EXIT_TRAP, f"wasm error: {_first_line(exc)}"
        finally:
            store.close()
        return RunOutcome(exit_code, reason, self._cap(request.stdout), self._cap(request.stderr))

    def _compile(self, digest: str, job_dir: Path) -> wasmtime.Module:
        """The module compiled in a child process (bounded in time and memory), or the copy kept
        from an earlier job with the same digest."""
        module = self._compiled.get(digest)
        if module is not None:
            self._compiled.move_to_end(digest)
            return module
        compiled = job_dir / COMPILED_FILE
        command = [sys.executable, "-m", "executor.engines.wasm_compile", str(job_dir / MODULE_FILE),
                   str(compiled), str(int(self._compile_timeout_s * 2) + 1)]
        try:
            result = subprocess.run(command, capture_output=True, timeout=self._compile_timeout_s,
                                    cwd=Path(__file__).resolve().parents[2])
        except subprocess.TimeoutExpired:
            raise EngineError(f"the wasm module did not compile within the node's limit of "
                              f"{self._compile_timeout_s:g} s (wasm_compile_timeout_s)") from None
        if result.returncode != 0:
            detail = result.stderr.decode(errors="replace").strip().splitlines()
            cause = detail[-1] if detail else f"the compiler exited with {result.returncode}"
            if result.returncode < 0:
                cause = f"the compiler was stopped by its limits (signal {-result.returncode})"
            raise EngineError(f"not a valid wasm module: {cause}")
        module = wasmtime.Module.deserialize_file(self._engine, str(compiled))
        compiled.unlink(missing_ok=True)
        self._compiled[digest] = module
        while len(self._compiled) > COMPILED_KEPT:
            self._compiled.popitem(last=False)
        return module

    def _cap(self, path: Path) -> bool:
        if path.exists() and path.stat().st_size > self._log_bytes:
            os.truncate(path, self._log_bytes)
            return True
        path.touch()
        return False


def _preopens(mounts: list[Mount], views: Path) -> list[tuple[Path, str, bool]]:
    """WASI preopens directories only: a file mounted at `/inputs/a.txt` is offered through a
    read-only view directory for `/inputs` holding a hard link to it."""
    preopens: list[tuple[Path, str, bool]] = []
    file_views: dict[str, Path] = {}
    for mount in mounts:
        if mount.host.is_dir():
            preopens.append((mount.host, mount.target, not mount.read_only))
            continue
        parent, name = os.path.split(mount.target)
        view = file_views.get(parent)
        if view is None:
            view = views / str(len(file_views))
            view.mkdir(parents=True)
            file_views[parent] = view
            preopens.append((view, parent or "/", False))
        try:
            os.link(mount.host, view / name)
        except OSError:
            shutil.copyfile(mount.host, view / name)
    return preopens


def _views_dir(request: RunRequest) -> Path:
    """Next to the first file input (its volume: views hold hard links, not copies), unless that
    is read-only (the node's input cache, shared by jobs): then in the job directory (copies)."""
    for mount in request.mounts:
        if mount.read_only and not mount.host.is_dir():
            if not os.access(mount.host.parent, os.W_OK):
                break
            return mount.host.parent / ".wasm-view"
    return request.job_dir / "wasm-view"


def _first_line(exc: Exception) -> str:
    """Wasmtime's messages start with a backtrace header; the cause is on the last line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
