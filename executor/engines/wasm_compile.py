"""Compiles a WASM module in a child process: `python -m executor.engines.wasm_compile SRC DST`.

Compiling is work the module's author chooses the size of (a few MiB of code can take Cranelift
minutes and gigabytes), and wasmtime cannot interrupt it. In a child it is bounded: by a wall-clock
timeout (the parent kills it), and by address-space and CPU limits set here. The parent
deserializes the artifact into an engine of the same configuration (`engine_config`).
"""

from __future__ import annotations

import resource
import sys

import wasmtime

COMPILE_MEMORY_BYTES = 4 * 1024**3  # address space of the compiling child


def engine_config() -> wasmtime.Config:
    """The one configuration of compiling and running engines (artifacts must match it).

    Proposals whose allocations the store's limits do not bound are off: GC objects and
    exceptions (a GC heap), threads (shared memories)."""
    config = wasmtime.Config()
    config.epoch_interruption = True
    config.wasm_gc = False
    config.wasm_exceptions = False
    config.wasm_threads = False
    config.shared_memory = False
    return config


def compile_to(source: str, destination: str, cpu_s: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (COMPILE_MEMORY_BYTES, COMPILE_MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    module = wasmtime.Module.from_file(wasmtime.Engine(engine_config()), source)
    with open(destination, "wb") as handle:
        handle.write(module.serialize())


def main(argv: list[str]) -> int:
    source, destination, cpu_s = argv
    try:
        compile_to(source, destination, int(cpu_s))
    except wasmtime.WasmtimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        print(lines[-1] if lines else type(exc).__name__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
