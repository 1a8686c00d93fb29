"""The operator's image policy: which images a stranger's job may name.

A node's Docker engine may hold images that are the operator's own (with tools or secrets baked
in); `if-not-present` would run any of them for anyone. With an allow-list set, a job may name only
images matching one of its entries: a name pattern (`cod/*`, `python:3.12*`, shell-style) or an
image digest (`sha256:…`, the image id, or a repo digest `name@sha256:…`). Empty: any image.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ImagePolicy:
    patterns: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> ImagePolicy:
        return cls(tuple(p.strip() for p in text.split(",") if p.strip()))

    def allows_name(self, name: str) -> bool:
        """Whether the name alone is allowed (checked before anything is pulled)."""
        return not self.patterns or any(fnmatch.fnmatchcase(name, p) for p in self.patterns
                                        if not p.startswith("sha256:"))

    def allows(self, name: str, digests: Iterable[str]) -> bool:
        """Whether the image, by its name or one of its digests (id, repo digests), is allowed."""
        if self.allows_name(name):
            return True
        ids = {d.rsplit("@", 1)[-1] for d in digests}
        return any(p in ids for p in self.patterns if p.startswith("sha256:"))

    def refusal(self, name: str) -> str:
        return (f"image {name} is not allowed on this node (operator allow-list COD_IMAGE_ALLOW: "
                f"{', '.join(self.patterns)})")
