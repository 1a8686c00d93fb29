"""Execution engines behind one small interface (`base.Engine`), keyed by the engine names of
`protocol.engines` (`docker`, `wasm`).

To add an engine: one module here with the engine (a class implementing `Engine`) and a
`from_settings(settings, storage)` factory, plus one line in `ENGINES` below naming the engine and
that factory (and the engine's own line in `protocol.engines.ENGINES`, which validates the spec).

Factories are named as `module:attribute` and imported when the node builds its engines, so that
importing this package (as `python -m executor.engines.wasm_compile` does) imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from executor.config import WorkerSettings
    from executor.engines.base import Engine
    from executor.storage import StorageRegistry

# (the node's settings, its input storage: an engine may fetch with it) -> the engine
EngineFactory = Callable[["WorkerSettings", "StorageRegistry"], "Engine"]

ENGINES: dict[str, str | EngineFactory] = {
    "docker": "executor.engines.docker_engine:from_settings",
    "wasm": "executor.engines.wasm_engine:from_settings",
}


def build_engines(settings: WorkerSettings, storage: StorageRegistry) -> dict[str, Engine]:
    """One engine per entry of `ENGINES`, built from the node's settings."""
    from executor.storage import resolve

    return {name: resolve(factory)(settings, storage) for name, factory in ENGINES.items()}


__all__ = ["ENGINES", "EngineFactory", "build_engines"]
