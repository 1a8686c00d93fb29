"""Input storage providers behind one interface (`base.StorageProvider`), picked by URI scheme."""

from __future__ import annotations

from collections.abc import Sequence

from executor.storage.base import InputUnavailable, StorageProvider


class StorageRegistry:
    def __init__(self, providers: Sequence[StorageProvider]) -> None:
        self._providers = list(providers)

    def for_source(self, source: str) -> StorageProvider:
        for provider in self._providers:
            if source.startswith(provider.schemes):
                return provider
        supported = ", ".join(s for p in self._providers for s in p.schemes)
        raise InputUnavailable(f"input {source}: this node supports {supported}")


__all__ = ["InputUnavailable", "StorageProvider", "StorageRegistry"]
