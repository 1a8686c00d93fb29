"""A job's result directory on IPFS (`stdout`, `stderr`, `exitCode`, outputs): read or download."""

from __future__ import annotations

from pathlib import Path

from executor.ipfs import IpfsError, IpfsUnavailable, KuboClient

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
