"""`ipfs://CID[/path]` inputs, fetched through the node's Kubo (files and directories).

An input is sized before it is fetched (Kubo's cumulative size, and a directory's entry count)
against the node's input cap and the space left where it lands (the job's capped input volume);
then bytes and entries are counted again as the content streams, since a DAG's recorded sizes
are chosen by its author.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from executor.storage.base import InputUnavailable
from protocol.ipfs import InputTooLarge, IpfsError, IpfsUnavailable, KuboClient
from protocol.spec import parse_size

if TYPE_CHECKING:
    from executor.config import WorkerSettings

DEFAULT_MAX_BYTES = 10 * 1024**3
DEFAULT_MAX_FILES = 100_000


def from_settings(settings: WorkerSettings, kubo: KuboClient) -> IpfsStorage:
    """The `ipfs` provider of `executor.storage.PROVIDERS`."""
    return IpfsStorage(kubo, settings.input_fetch_timeout_s, parse_size(settings.max_input_size),
                       settings.max_input_files)


class IpfsStorage:
    def __init__(self, kubo: KuboClient, fetch_timeout_s: int = 120,
                 max_bytes: int = DEFAULT_MAX_BYTES, max_files: int = DEFAULT_MAX_FILES) -> None:
        self._kubo = kubo
        self._timeout = fetch_timeout_s
        self._max_bytes = max_bytes
        self._max_files = max_files

    def content_id(self, source: str) -> str:
        return source  # content-addressed: the path names the content for good

    def fetch(self, source: str, destination: Path) -> str:
        path = source.removeprefix("ipfs://")
        destination.parent.mkdir(parents=True, exist_ok=True)
        room, room_files = _room(destination.parent)
        max_bytes = min(self._max_bytes, room)
        max_files = min(self._max_files, room_files)

        def too_large(what: str) -> InputUnavailable:
            if max_bytes < self._max_bytes or max_files < self._max_files:
                where = f"the {max_bytes} bytes and {max_files} files left for the job's inputs"
            else:
                where = (f"the node's input cap of {self._max_bytes} bytes and "
                         f"{self._max_files} files")
            return InputUnavailable(f"input {source} is larger than {where} ({what})")

        try:
            stat = self._kubo.stat(path, timeout_s=self._timeout)
            if stat.cumulative_size > max_bytes:
                raise too_large(f"{stat.cumulative_size} bytes by its DAG")
            if stat.type == "directory" and stat.links > max_files:
                raise too_large(f"{stat.links} entries in its root directory")
            self._kubo.get(path, destination, timeout_s=self._timeout, max_bytes=max_bytes,
                           max_entries=max_files)
        except IpfsUnavailable:
            raise
        except InputTooLarge as exc:
            raise too_large(str(exc)) from exc
        except IpfsError as exc:
            raise InputUnavailable(f"input {source} not available: {exc}") from exc
        return source


def _room(directory: Path) -> tuple[int, int]:
    """Bytes and inodes free where the input lands: on the job's capped volume, what is left of
    the job's input cap."""
    try:
        usage = os.statvfs(directory)
    except OSError:
        return DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES
    inodes = usage.f_favail if usage.f_files else DEFAULT_MAX_FILES  # some filesystems report 0
    return usage.f_bavail * usage.f_frsize, inodes
