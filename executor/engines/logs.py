"""A log file that keeps the first `limit` bytes of a stream and notes that it dropped the rest."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType


class CappedLog:
    def __init__(self, path: Path, limit: int) -> None:
        self._handle = path.open("wb")
        self._room = limit
        self.truncated = False
        self.full_disk = False

    def write(self, data: bytes) -> None:
        if self.truncated or self.full_disk:
            return
        if len(data) > self._room:
            data = data[: self._room]
            self.truncated = True
        try:
            self._handle.write(data)
        except OSError:  # the result filesystem is full: the job wrote past its output cap
            self.full_disk = True
        self._room -= len(data)

    def close(self) -> None:
        try:
            self._handle.close()
        except OSError:
            self.full_disk = True

    def __enter__(self) -> CappedLog:
        return self

    def __exit__(self, _type: type[BaseException] | None, _exc: BaseException | None,
                 _tb: TracebackType | None) -> None:
        self.close()
