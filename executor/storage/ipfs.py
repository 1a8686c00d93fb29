"""`ipfs://CID[/path]` inputs, fetched through the node's Kubo (files and directories)."""

from __future__ import annotations

from pathlib import Path

from executor.ipfs import IpfsError, IpfsUnavailable, KuboClient
from executor.storage.base import InputUnavailable


class IpfsStorage:
    schemes: tuple[str, ...] = ("ipfs://",)

    def __init__(self, kubo: KuboClient, fetch_timeout_s: int = 120) -> None:
        self._kubo = kubo
        self._timeout = fetch_timeout_s

    def content_id(self, source: str) -> str:
        return source  # content-addressed: the path names the content for good

    def fetch(self, source: str, destination: Path) -> str:
        try:
            self._kubo.get(source.removeprefix("ipfs://"), destination, timeout_s=self._timeout)
        except IpfsUnavailable:
            raise
        except IpfsError as exc:
            raise InputUnavailable(f"input {source} not available: {exc}") from exc
        return source
