"""Input storage providers behind one interface (`base.StorageProvider`), keyed by the names of
the source schemes of `protocol.sources` (`ipfs`, `url`, `inline`).

To add a source: one module here with the provider (a class implementing `StorageProvider`) and a
`from_settings(settings, kubo)` factory, plus one line in `PROVIDERS` below naming the scheme and
that factory (and the scheme's own line in `protocol.sources.SCHEMES`, which validates the spec).

Factories are named as `module:attribute` and imported when the node builds its providers, so that
importing this package (as `executor.egress` does, for `InputUnavailable`) imports none of them.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from executor.storage.base import InputUnavailable, StorageProvider
from protocol.sources import SCHEMES, scheme_of

if TYPE_CHECKING:
    from executor.config import WorkerSettings
    from protocol.ipfs import KuboClient

F = TypeVar("F")
# (the node's settings, its Kubo client) -> the provider
StorageFactory = Callable[["WorkerSettings", "KuboClient"], StorageProvider]

PROVIDERS: dict[str, str | StorageFactory] = {
    "ipfs": "executor.storage.ipfs:from_settings",
    "url": "executor.storage.url:from_settings",
    "inline": "executor.storage.inline:from_settings",
}


class StorageRegistry:
    """This node's providers, by scheme name; `for_source` picks the one a source's scheme names."""

    def __init__(self, providers: Mapping[str, StorageProvider]) -> None:
        self._providers = dict(providers)

    def for_source(self, source: str) -> StorageProvider:
        provider = self._providers.get(scheme_of(source) or "")
        if provider is not None:
            return provider
        supported = ", ".join(prefix for name in self._providers
                              for prefix in (SCHEMES[name].prefixes if name in SCHEMES else ()))
        raise InputUnavailable(f"input {source}: this node supports {supported}")

    @property
    def names(self) -> list[str]:
        return list(self._providers)


def build_storage(settings: WorkerSettings, kubo: KuboClient) -> StorageRegistry:
    """One provider per entry of `PROVIDERS`, built from the node's settings."""
    return StorageRegistry({name: resolve(factory)(settings, kubo)
                            for name, factory in PROVIDERS.items()})


def resolve(factory: str | F) -> F:
    """A factory given as `module:attribute`, imported; one given as a callable, as is."""
    if isinstance(factory, str):
        resolved: F = pkgutil.resolve_name(factory)
        return resolved
    return factory


__all__ = ["PROVIDERS", "InputUnavailable", "StorageFactory", "StorageProvider", "StorageRegistry",
           "build_storage", "resolve"]
