"""`https://` and `http://` inputs: streamed to disk, with a size cap and a timeout."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx

from executor.storage.base import InputUnavailable

CHUNK = 1024 * 1024


class UrlStorage:
    schemes: tuple[str, ...] = ("https://", "http://")

    def __init__(self, max_bytes: int, timeout_s: float) -> None:
        self._max = max_bytes
        self._timeout = timeout_s

    def content_id(self, source: str) -> None:
        return None  # what a URL serves can change: only its bytes identify it

    def fetch(self, source: str, destination: Path) -> str:
        """Download to `destination`; the whole download must finish within the timeout."""
        digest = hashlib.sha256()
        deadline = time.monotonic() + self._timeout
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            with httpx.stream("GET", source, timeout=min(self._timeout, 30.0),
                              follow_redirects=True) as response:
                if response.status_code != 200:
                    raise InputUnavailable(f"input {source} not available: HTTP "
                                           f"{response.status_code}")
                declared = int(response.headers.get("content-length") or 0)
                if declared > self._max:
                    raise self._too_large(source)
                written = 0
                with destination.open("wb") as out:
                    for chunk in response.iter_bytes(CHUNK):
                        written += len(chunk)
                        if written > self._max:
                            raise self._too_large(source)
                        if time.monotonic() > deadline:
                            raise InputUnavailable(
                                f"input {source} not available: download exceeded "
                                f"{self._timeout:g} s")
                        out.write(chunk)
                        digest.update(chunk)
        except httpx.HTTPError as exc:
            raise InputUnavailable(f"input {source} not available: {exc}") from exc
        return f"sha256:{digest.hexdigest()}"

    def _too_large(self, source: str) -> InputUnavailable:
        return InputUnavailable(f"input {source} is larger than the node's URL input cap of "
                                f"{self._max} bytes")
