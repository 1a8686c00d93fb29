"""The input source schemes a spec may use, keyed by name: `ipfs`, `url`, `inline`.

Each scheme owns a set of source prefixes and validates a source string of its own (the bridge
refuses a spec whose source no scheme accepts, before it is dispatched). The executor fetches
each scheme with the provider registered under the same name in `executor.storage`.

To add a source: its validator (a function of the source string, raising ValueError with a
message naming what is wrong) and one line in `SCHEMES` below; on the executor side, one module in
`executor/storage/` and one line in its `PROVIDERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from multiformats import CID

MAX_INLINE_BYTES = 64 * 1024  # inline (`data:`) inputs travel on-chain inside the spec: keep them small


@dataclass(frozen=True)
class SourceScheme:
    """One kind of input source: the prefixes it owns and the check of a source string."""

    prefixes: tuple[str, ...]  # e.g. ("ipfs://",)
    hint: str  # how a source of it looks, for error messages: "ipfs://CID"
    validate: Callable[[str], None]  # raises ValueError for a source of its prefixes it refuses


def is_cid(text: str) -> bool:
    """Whether `text` is a CID (v0 or v1, any multibase, codec and hash the multiformats tables
    know), parsed as one rather than matched by shape: `bafkqaaa`, the identity CID of no bytes,
    is one."""
    try:
        CID.decode(text)
    except Exception:  # the library raises a dozen types (KeyError, IndexError, …) on bad input
        return False
    return True


def _ipfs(value: str) -> None:
    root, _, path = value.removeprefix("ipfs://").partition("/")
    if not is_cid(root) or "\x00" in path:
        raise ValueError(f"not an ipfs://CID[/path] source: {value[:120]!r}")


def _url(value: str) -> None:
    """Any http(s) URL: where it may lead is the node's egress policy's call, at fetch time."""


def _inline(value: str) -> None:
    if len(value) > MAX_INLINE_BYTES * 4 // 3 + 256:
        raise ValueError(f"inline data is limited to {MAX_INLINE_BYTES} bytes")
    if "," not in value:
        raise ValueError("not a data: URL (expected data:[<type>][;base64],<data>)")


SCHEMES: dict[str, SourceScheme] = {
    "ipfs": SourceScheme(("ipfs://",), "ipfs://CID", _ipfs),
    "url": SourceScheme(("https://", "http://"), "https://URL", _url),
    "inline": SourceScheme(("data:",), "data:,…", _inline),
}


def scheme_of(source: str) -> str | None:
    """The name of the scheme whose prefix `source` starts with, or None."""
    for name, scheme in SCHEMES.items():
        if source.startswith(scheme.prefixes):
            return name
    return None


def validate_source(value: str) -> str:
    """`value` if a registered scheme accepts it; ValueError naming the schemes otherwise."""
    name = scheme_of(value)
    if name is None:
        hints = [s.hint for s in SCHEMES.values()]
        known = " or ".join([", ".join(hints[:-1]), hints[-1]]) if len(hints) > 1 else hints[0]
        raise ValueError(f"unsupported source {value!r}: use {known}")
    SCHEMES[name].validate(value)
    return value
