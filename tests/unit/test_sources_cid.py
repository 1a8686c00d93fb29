"""`is_cid`'s fast path against the multiformats library it stands in for: on valid CIDs of every
common shape and on hostile near-misses, it must give the library's answer (the fast path may
only accept what the library accepts; everything else goes to the library)."""

from __future__ import annotations

import base64
import hashlib
import random

import pytest
from multiformats import CID, multihash

from protocol.sources import _fast_cid, is_cid

CODECS = ["dag-pb", "raw", "dag-cbor", "libp2p-key", "dag-json", "json", "git-raw", "dag-jose"]
HASHES = ["sha2-256", "sha2-512", "blake2b-256", "sha3-256", "identity"]
BASES = ["base32", "base58btc", "base36", "base16", "base64", "base32upper"]


def library(text: str) -> bool:
    try:
        CID.decode(text)
    except Exception:
        return False
    return True


def valid_cids(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        data = rng.randbytes(rng.randrange(0, 40))
        hashfun = rng.choice(HASHES)
        digest = multihash.digest(data, hashfun)
        cid = CID("base32", 1, rng.choice(CODECS), digest)
        out.append(str(cid))
        out.append(cid.encode(rng.choice(BASES)))
        out.append(str(CID("base58btc", 0, "dag-pb", multihash.digest(data, "sha2-256"))))
    return [*out, "bafkqaaa", "bafybeifnpx3io52zdt45tzxhynk7qf55hhbzfxtux24xfchmlqipybr6ne",
            "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"]


def mutations(rng: random.Random, text: str) -> list[str]:
    """Near-misses: a character changed, dropped, added, cases flipped, truncated, padded."""
    alphabet = "abcdefghijklmnopqrstuvwxyz234567QmABCXYZ0189=+/-_ \x00é"
    i = rng.randrange(len(text))
    return [
        text[:i] + rng.choice(alphabet) + text[i + 1:],
        text[:i] + text[i + 1:],
        text[:i] + rng.choice(alphabet) + text[i:],
        text.upper(), text.swapcase(), text[:-1], text + "a", text + "=", text[:i], " " + text,
        text + "\n", text[:1] + text[1:].upper(),
    ]


def crafted_v1(rng: random.Random) -> str:
    """A base32 CIDv1 with random (often wrong) version, codec, hash code and lengths."""
    version = rng.choice([b"\x01", b"\x00", b"\x02", b"\x12", b"\x81\x01", b""])
    codec = rng.choice([b"\x70", b"\x55", b"\x71", b"\x72", b"\xa9\x02", b"\x80\x04",
                        b"\xf0\x01", b"\x55\x00", b"\xd5\x00", b"\xff\xff\x7f", b""])
    hash_code = rng.choice([b"\x12", b"\x00", b"\x13", b"\x92\x00", b"\x80\x00", b""])
    size = rng.randrange(0, 70)
    declared = rng.choice([size, size + 1, max(0, size - 1), 32, 0x80])
    body = version + codec + hash_code + bytes([declared % 256]) + rng.randbytes(size)
    return "b" + base64.b32encode(body).decode().rstrip("=").lower()


@pytest.mark.parametrize("seed", range(4))
def test_is_cid_agrees_with_the_library_on_valid_and_hostile_inputs(seed: int) -> None:
    rng = random.Random(seed)
    valid = valid_cids(rng, 150)
    inputs = list(valid)
    for text in valid:
        inputs += mutations(rng, text)
    inputs += [crafted_v1(rng) for _ in range(3000)]
    inputs += ["", "b", "Q", "Qm", "Qm" + "1" * 44, "Qm" + "z" * 44, "b" * 60, "bafy", "z", "k",
               "Qm" + "0" * 44, "bafkqaaa=", "BAFKQAAA", "\U0001f680", "ipfs://bafkqaaa"]
    fast_accepted = 0
    for text in inputs:
        expected = library(text)
        assert is_cid(text) == expected, text
        if _fast_cid(text):
            fast_accepted += 1
            assert expected, f"fast path accepted what the library refuses: {text!r}"
    assert fast_accepted > len(valid) // 3  # the fast path is used, not only the fallback


def test_the_common_forms_take_the_fast_path() -> None:
    for text in ["bafkqaaa", "bafybeifnpx3io52zdt45tzxhynk7qf55hhbzfxtux24xfchmlqipybr6ne",
                 "bafkreidovn72i5u5267d2jpcgldmxcrh2a3n7bx5xt4g6cpfjnd45mr7wi",
                 "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
                 str(CID("base32", 1, "dag-cbor", multihash.digest(b"x", "sha2-256")))]:
        assert _fast_cid(text), text


def test_a_sha256_cid_of_real_content_is_accepted() -> None:
    digest = bytes([0x12, 0x20]) + hashlib.sha256(b"hello").digest()
    assert is_cid(str(CID("base32", 1, "raw", digest)))
    assert is_cid(str(CID("base58btc", 0, "dag-pb", digest)))
