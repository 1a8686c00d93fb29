"""The interface of input storage providers (ipfs, url, inline)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class InputUnavailable(RuntimeError):
    """An input could not be fetched for a reason retrying will not fix (bad CID, 404, too large).

    Transient outages raise the provider's own error instead (e.g. `IpfsUnavailable`), which the
    task retries with backoff."""


class StorageProvider(Protocol):
    """Fetches the sources of one scheme of `protocol.sources` (the registry's key names it)."""

    def content_id(self, source: str) -> str | None:
        """A stable identifier of the source's content known without fetching it (an IPFS path),
        or None when only fetching can tell (a URL)."""
        ...

    def fetch(self, source: str, destination: Path) -> str:
        """Write the source's content to `destination` (a file, or a directory for an IPFS
        directory), streaming; returns the content's identifier."""
        ...
