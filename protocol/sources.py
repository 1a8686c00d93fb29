"""The input source schemes a spec may use, keyed by name: `ipfs`, `url`, `inline`.

Each scheme owns a set of source prefixes and validates a source string of its own (the bridge
refuses a spec whose source no scheme accepts, before it is dispatched). The executor fetches
each scheme with the provider registered under the same name in `executor.storage`.

To add a source: its validator (a function of the source string, raising ValueError with a
message naming what is wrong) and one line in `SCHEMES` below; on the executor side, one module in
`executor/storage/` and one line in its `PROVIDERS`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

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
    is one.

    The library takes about 0.3 ms a call, most of a spec's validation: the two forms nearly every
    spec uses (CIDv0 `Qm…`, CIDv1 base32 `b…` of a common codec with a sha2-256 or identity hash)
    are decoded here, anything else goes to the library, and answers are cached. The fast path
    only ever accepts what the library accepts (tests/unit/test_sources_cid.py checks both on
    valid and hostile inputs); it never rejects on its own."""
    if len(text) <= _CACHED_CHARS:
        return _cached_is_cid(text)
    return _fast_cid(text) or _library_cid(text)


_CACHED_CHARS = 128  # longer texts (identity CIDs, hostile junk) are not kept: memory stays bounded


@lru_cache(maxsize=8192)
def _cached_is_cid(text: str) -> bool:
    return _fast_cid(text) or _library_cid(text)


def _library_cid(text: str) -> bool:
    from multiformats import CID  # ~40 ms to import: only for what the fast path leaves over

    try:
        CID.decode(text)
    except Exception:  # the library raises a dozen types (KeyError, IndexError, …) on bad input
        return False
    return True


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_VALUE = {c: i for i, c in enumerate(_B58)}
_B32_BODY = re.compile(r"[a-z2-7]+")
# dag-pb, raw, dag-cbor, libp2p-key, dag-json, json: all in the multicodec table
_FAST_CODECS = frozenset({0x70, 0x55, 0x71, 0x72, 0x0129, 0x0200})
_SHA2_256, _IDENTITY = 0x12, 0x00


def _fast_cid(text: str) -> bool:
    """True for a well-formed common CID; False means "ask the library", not "not a CID"."""
    if len(text) == 46 and text.startswith("Qm"):
        return _fast_v0(text)
    if text.startswith("b") and 8 <= len(text) <= 200 and _B32_BODY.fullmatch(text, 1):
        return _fast_v1(text[1:])
    return False


def _fast_v0(text: str) -> bool:
    """`Qm…`: base58btc of the 34 bytes of a sha2-256 multihash (0x12 0x20, 32 bytes)."""
    n = 0
    for char in text:
        value = _B58_VALUE.get(char)
        if value is None:
            return False
        n = n * 58 + value
    return n.bit_length() <= 34 * 8 and n >> (32 * 8) == 0x1220


def _fast_v1(body: str) -> bool:
    """`b…`: base32 (RFC 4648, lowercase, unpadded, canonical) of version 1, a codec, and a
    sha2-256 (32 bytes) or identity multihash whose length matches."""
    try:
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    except ValueError:  # binascii.Error: a length no byte string encodes to
        return False
    if base64.b32encode(raw).decode().rstrip("=").lower() != body:
        return False  # non-zero trailing bits: leave the verdict to the library
    codec, i = _varint(raw, 1) if raw[:1] == b"\x01" else (None, 0)
    if codec not in _FAST_CODECS or i + 2 > len(raw):
        return False
    hash_code, size = raw[i], raw[i + 1]
    if hash_code == _SHA2_256:
        return size == 32 and len(raw) == i + 2 + 32
    if hash_code == _IDENTITY:
        return size < 0x80 and len(raw) == i + 2 + size
    return False


def _varint(raw: bytes, i: int) -> tuple[int | None, int]:
    """The unsigned varint at `raw[i]` (at most 2 bytes, minimal) and the index after it."""
    if i < len(raw) and raw[i] < 0x80:
        return raw[i], i + 1
    if i + 1 < len(raw) and 0 < raw[i + 1] < 0x80:
        return (raw[i] & 0x7F) | (raw[i + 1] << 7), i + 2
    return None, i


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
