"""A job's result directory on IPFS (`stdout`, `stderr`, `exitCode`, outputs): read or download."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx

from protocol.ipfs import IpfsError, IpfsUnavailable, KuboClient

LOG_STREAMS = ("stdout", "stderr")


def read_log(kubo: KuboClient, cid: str, stream: str) -> bytes:
    """One of the job's log files; empty if the result has none."""
    if stream not in LOG_STREAMS:
        raise ValueError(f"unknown log stream {stream!r}: use stdout or stderr")
    try:
        return kubo.cat(f"{cid}/{stream}")
    except IpfsUnavailable:
        raise
    except IpfsError as exc:
        if "no link named" in str(exc) or "not found" in str(exc):
            return b""
        raise


def download(kubo: KuboClient, cid: str, destination: Path) -> Path:
    """Write the whole result directory to `destination`, which must not exist yet."""
    if destination.exists():
        raise FileExistsError(f"{destination} exists: remove it or choose another --output-dir")
    return kubo.get(cid, destination)


def stream_log(api_url: str, cid: str, stream: str, chunk: int = 64 * 1024) -> Iterator[bytes]:
    """One log file, streamed from Kubo as it arrives (for `GET /jobs/{id}/logs`)."""
    if stream not in LOG_STREAMS:
        raise ValueError(f"unknown log stream {stream!r}: use stdout or stderr")
    url = f"{api_url.rstrip('/')}/api/v0/cat"
    with httpx.Client(timeout=120) as client, client.stream(
            "POST", url, params={"arg": f"/ipfs/{cid}/{stream}"}) as response:
        if response.status_code != 200:
            return  # no such file in the result: an empty log
        yield from response.iter_bytes(chunk)
