"""A small typed client for the Kubo RPC API (`/api/v0/…`, always POST).

`ipfshttpclient` refuses any Kubo >= 0.8, so we speak the RPC directly over httpx. Data is streamed
both ways: `get` extracts Kubo's tar stream as it arrives, `add_directory` streams file bodies.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import httpx


class IpfsError(RuntimeError):
    """Kubo answered with an error (bad CID, not found, …)."""


class IpfsUnavailable(IpfsError):
    """Kubo could not be reached; worth retrying."""


@dataclass(frozen=True)
class Stat:
    cid: str
    type: str
    size: int
    cumulative_size: int


class _StreamReader:
    """Adapts an httpx byte iterator to the file-like `read` that tarfile's stream mode wants."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                break
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


class KuboClient:
    """Client for one Kubo daemon's RPC API, e.g. `http://127.0.0.1:5001`."""

    def __init__(self, api_url: str, timeout: float = 120.0) -> None:
        self.api_url = api_url.rstrip("/")
        self._http = httpx.Client(base_url=f"{self.api_url}/api/v0", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _post(self, command: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.post(command, **kwargs)
        except httpx.TransportError as exc:
            raise IpfsUnavailable(f"no IPFS API at {self.api_url}: {exc}") from exc
        if response.status_code != 200:
            raise IpfsError(f"ipfs {command} failed: {_error_message(response)}")
        return response

    def id(self) -> dict[str, Any]:
        result: dict[str, Any] = self._post("id").json()
        return result

    def add_bytes(self, data: bytes, name: str = "data") -> str:
        """Add one file; returns its CIDv1."""
        response = self._post(
            "add",
            params={"cid-version": "1", "pin": "true", "quieter": "true"},
            files={"file": (name, data, "application/octet-stream")},
        )
        return str(json.loads(response.text.strip().splitlines()[-1])["Hash"])

    def add_path(self, path: Path) -> str:
        """Add a file or a directory tree (recursively), pinned, as CIDv1; returns the root CID."""
        root_name = path.name or "root"
        with ExitStack() as stack:
            parts: list[tuple[str, tuple[str, IO[bytes] | bytes, str]]] = []
            if path.is_file():
                handle = stack.enter_context(path.open("rb"))
                parts.append(("file", (quote(root_name, safe=""), handle, "application/octet-stream")))
            else:
                for rel, is_dir in _walk(path):
                    name = quote(f"{root_name}/{rel}" if rel else root_name, safe="")
                    if is_dir:
                        parts.append(("file", (name, b"", "application/x-directory")))
                    else:
                        handle = stack.enter_context((path / rel).open("rb"))
                        parts.append(("file", (name, handle, "application/octet-stream")))
            response = self._post(
                "add",
                params={"cid-version": "1", "pin": "true", "recursive": "true"},
                files=parts,
            )
        entries = [json.loads(line) for line in response.text.splitlines() if line.strip()]
        for entry in entries:
            if entry.get("Name") == root_name:
                return str(entry["Hash"])
        raise IpfsError(f"ipfs add returned no root entry for {root_name!r}")

    def get(self, ipfs_path: str, destination: Path, timeout_s: int = 120) -> Path:
        """Fetch `CID[/sub/path]` to `destination` (a file or a directory), streaming Kubo's tar.

        Kubo searches forever for a CID nobody serves: its own `timeout` option bounds that."""
        arg = f"/ipfs/{ipfs_path}"
        params = {"arg": arg, "archive": "true", "timeout": f"{timeout_s}s"}
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = destination.parent / f".{destination.name}.partial"
        staging.mkdir(parents=True, exist_ok=True)
        try:
            with self._http.stream("POST", "get", params=params) as resp:
                if resp.status_code != 200:
                    resp.read()
                    raise IpfsError(f"ipfs get {ipfs_path} failed: {_error_message(resp)}")
                with tarfile.open(fileobj=_StreamReader(resp.iter_bytes()), mode="r|") as tar:  # type: ignore[call-overload]
                    tar.extractall(staging, filter="data")
        except httpx.TransportError as exc:
            raise IpfsUnavailable(f"no IPFS API at {self.api_url}: {exc}") from exc
        entries = list(staging.iterdir())
        if len(entries) != 1:
            raise IpfsError(f"ipfs get {ipfs_path}: expected one root entry, got {len(entries)}")
        entries[0].rename(destination)
        staging.rmdir()
        return destination

    def cat(self, ipfs_path: str) -> bytes:
        return self._post("cat", params={"arg": f"/ipfs/{ipfs_path}"}).content

    def stat(self, cid: str, timeout_s: int | None = None) -> Stat:
        params = {"arg": f"/ipfs/{cid}"}
        if timeout_s is not None:
            params["timeout"] = f"{timeout_s}s"
        data = self._post("files/stat", params=params).json()
        return Stat(cid=data["Hash"], type=data["Type"], size=int(data["Size"]),
                    cumulative_size=int(data["CumulativeSize"]))

    def pin(self, cid: str) -> None:
        self._post("pin/add", params={"arg": cid})

    def unpin(self, cid: str) -> None:
        self._post("pin/rm", params={"arg": cid})

    def pinned(self) -> list[str]:
        """The CIDs pinned recursively on this node (what it holds on purpose)."""
        data = self._post("pin/ls", params={"type": "recursive"}).json()
        return sorted(data.get("Keys", {}))

    def bitswap_received(self) -> int:
        """Bytes this node has received from peers over bitswap since it started."""
        return int(self._post("stats/bitswap").json().get("DataReceived", 0))

    def peer_addresses(self) -> list[str]:
        """This node's swarm addresses, with its peer id (for `swarm/connect`)."""
        data = self.id()
        return [str(a) for a in data.get("Addresses") or []]

    def connect(self, address: str) -> None:
        self._post("swarm/connect", params={"arg": address})

    def is_pinned(self, cid: str) -> bool:
        try:
            self._post("pin/ls", params={"arg": cid, "type": "recursive"})
        except IpfsUnavailable:
            raise
        except IpfsError:
            return False
        return True


def _walk(root: Path, prefix: str = "") -> Iterator[tuple[str, bool]]:
    """Depth-first (relative path, is_dir), each directory before its content, root first."""
    if not prefix:
        yield "", True
    for entry in sorted(os.scandir(root / prefix if prefix else root), key=lambda e: e.name):
        rel = f"{prefix}{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            yield rel, True
            yield from _walk(root, f"{rel}/")
        elif entry.is_file(follow_symlinks=False):
            yield rel, False


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("Message", response.text))
    except (ValueError, AttributeError):
        return response.text.strip() or f"HTTP {response.status_code}"
