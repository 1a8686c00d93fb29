"""A small typed client for the Kubo RPC API (`/api/v0/…`, always POST).

`ipfshttpclient` refuses any Kubo >= 0.8, so we speak the RPC directly over httpx. Data is streamed
both ways: `get` extracts Kubo's tar stream as it arrives, `add_path` streams file bodies.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from protocol.tree import DEFAULT_MAX_DEPTH, remove, walk

CHUNK = 1 << 20

# The UnixFS layout of everything this client adds, named on every `add` rather than left to the
# operator's `Import.*` config: replicas of a job must publish the same result under the same CID.
# (Kubo's defaults for CIDv1, with the file fan-out and HAMT fan-out it uses for 256 KiB chunks.)
# No mode or mtime is stored: the multipart parts carry none and preserve-mode/-mtime stay off.
# Not settable per request: Import.UnixFSHAMTDirectorySizeThreshold (when a directory is sharded,
# 256 KiB of links by default), which matters only for directories of thousands of entries.
ADD_LAYOUT: dict[str, str] = {
    "cid-version": "1",
    "hash": "sha2-256",
    "raw-leaves": "true",
    "chunker": "size-262144",
    "trickle": "false",
    "max-file-links": "174",
    "max-hamt-fanout": "256",
    "inline": "false",
    "empty-dirs": "true",
    "preserve-mode": "false",
    "preserve-mtime": "false",
}


class IpfsError(RuntimeError):
    """Kubo answered with an error (bad CID, not found, …)."""


class IpfsUnavailable(IpfsError):
    """Kubo could not be reached; worth retrying."""


class InputTooLarge(IpfsError):
    """Content larger (in bytes or entries) than the caller allowed; the message says which."""


@dataclass(frozen=True)
class Stat:
    cid: str
    type: str
    size: int
    cumulative_size: int  # as the DAG's links record it: a hint (its author chose it), not a bound
    links: int = 0  # the root node's links (a directory's entries, unless it is sharded)


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
        """Add one file (in the `ADD_LAYOUT`); returns its CIDv1."""
        response = self._post(
            "add",
            params={**ADD_LAYOUT, "pin": "true", "quieter": "true"},
            files={"file": (name, data, "application/octet-stream")},
        )
        return str(json.loads(response.text.strip().splitlines()[-1])["Hash"])

    def add_path(self, path: Path, max_depth: int = DEFAULT_MAX_DEPTH) -> str:
        """Add a file or a directory tree, pinned, in the `ADD_LAYOUT`; returns the root CID: the
        same tree gives the same CID whatever the node's config, file order on disk or mtimes.

        The multipart body is generated as it is sent: each file is opened only while it streams
        (a tree of any file count needs one descriptor per level, not one per file), and the walk
        is iterative (TreeLimitExceeded past `max_depth` levels)."""
        root_name = path.name or "root"
        boundary = secrets.token_hex(16)
        response = self._post(
            "add",
            params={**ADD_LAYOUT, "pin": "true", "recursive": "true", "quieter": "true"},
            content=_multipart(path, root_name, boundary, max_depth),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        lines = [line for line in response.text.splitlines() if line.strip()]
        if not lines:
            raise IpfsError(f"ipfs add returned no root entry for {root_name!r}")
        return str(json.loads(lines[-1])["Hash"])

    def get(self, ipfs_path: str, destination: Path, timeout_s: int = 120,
            max_bytes: int | None = None, max_entries: int | None = None) -> Path:
        """Fetch `CID[/sub/path]` to `destination` (a file or a directory), streaming Kubo's tar.

        Kubo searches forever for a CID nobody serves: its own `timeout` option bounds that. Bytes
        and entries are counted as the tar arrives (a DAG's recorded sizes are the author's word):
        past `max_bytes` or `max_entries`, or when the destination's filesystem is full, the
        download stops and InputTooLarge is raised."""
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
                _extract(_StreamReader(resp.iter_bytes()), staging, max_bytes, max_entries)
        except httpx.TransportError as exc:
            remove(staging)
            raise IpfsUnavailable(f"no IPFS API at {self.api_url}: {exc}") from exc
        except OSError as exc:
            remove(staging)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InputTooLarge("its content does not fit the space left for the job's "
                                    "inputs") from exc
            raise
        except BaseException:
            remove(staging)
            raise
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
                    cumulative_size=int(data["CumulativeSize"]), links=int(data.get("Blocks", 0)))

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


def _extract(stream: _StreamReader, staging: Path, max_bytes: int | None,
             max_entries: int | None) -> None:
    """Extract a tar stream member by member, counting what each header announces before any of
    its content is written."""
    total = entries = 0
    with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
        for member in tar:
            entries += 1
            total += max(member.size, 0)
            if max_entries is not None and entries > max_entries:
                raise InputTooLarge(f"it holds more than {max_entries} files and directories")
            if max_bytes is not None and total > max_bytes:
                raise InputTooLarge(f"it is larger than {max_bytes} bytes")
            tar.extract(member, staging, filter="data")
            tar.members = []  # stream mode keeps every header otherwise: memory grows per entry


def _multipart(path: Path, root_name: str, boundary: str, max_depth: int) -> Iterator[bytes]:
    """The body of `ipfs add` for a file or a tree, generated lazily (see `add_path`)."""
    def header(name: str, content_type: str) -> bytes:
        return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"{quote(name, safe='')}\"\r\nContent-Type: {content_type}\r\n\r\n"
                ).encode()

    if path.is_file():
        yield header(root_name, "application/octet-stream")
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk
        yield b"\r\n"
    else:
        # names sorted, each directory before its content (`walk`); UnixFS sorts a directory's
        # links by name in any case, so the order files were written in does not reach the CID
        for entry in walk(path, max_depth):
            name = f"{root_name}/{entry.rel}" if entry.rel else root_name
            if entry.is_dir:
                yield header(name, "application/x-directory")
            else:
                yield header(name, "application/octet-stream")
                fd = entry.open()
                with os.fdopen(fd, "rb") as handle:
                    while chunk := handle.read(CHUNK):
                        yield chunk
            yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("Message", response.text))
    except (ValueError, AttributeError):
        return response.text.strip() or f"HTTP {response.status_code}"
