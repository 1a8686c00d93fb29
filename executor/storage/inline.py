"""Small inline inputs: `data:` URLs (RFC 2397) carried inside the spec."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from executor.storage.base import InputUnavailable

if TYPE_CHECKING:
    from executor.config import WorkerSettings
    from protocol.ipfs import KuboClient


def from_settings(settings: WorkerSettings, kubo: KuboClient) -> InlineStorage:
    """The `inline` provider of `executor.storage.PROVIDERS`."""
    return InlineStorage()


class InlineStorage:
    def content_id(self, source: str) -> str:
        return f"sha256:{hashlib.sha256(self._decode(source)).hexdigest()}"

    def fetch(self, source: str, destination: Path) -> str:
        data = self._decode(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(data)
        return f"sha256:{hashlib.sha256(data).hexdigest()}"

    @staticmethod
    def _decode(source: str) -> bytes:
        try:
            with urllib.request.urlopen(source) as response:  # the stdlib's data: URL handler
                data: bytes = response.read()
                return data
        except (urllib.error.URLError, ValueError) as exc:
            raise InputUnavailable(f"inline input is not a valid data: URL: {exc}") from exc
