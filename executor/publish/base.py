"""The interface of result publishers."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Publisher(Protocol):
    def publish(self, result_dir: Path) -> str:
        """Store the result directory durably; return its CID once it is retrievable."""
        ...

    def is_available(self, cid: str) -> bool:
        """Whether an earlier result can still be retrieved (memoised results are checked)."""
        ...
