"""Secrets out of texts that leave the process: error responses, health checks, logs a user sees.

Operators put credentials in URLs (`redis://:password@host`, `https://user:key@rpc`,
`https://rpc/v3/<api key>`, `?apikey=…`), and libraries quote those URLs in their exceptions —
sometimes whole, sometimes only the path and query (`with url: /v3/KEY?token=…`). `redact` strips
userinfo, query values and key-like path segments from every URL it finds, and removes any secret
taken from the URLs it is told about wherever it appears, however the library quoted it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

MASK = "***"
_URL_RE = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\s'\"<>()\[\]{}]+")
# a path with a query, quoted without its scheme and host (urllib3: "with url: /v3/KEY?x=y")
_BARE_PATH_RE = re.compile(r"(?<![\w/:.])/[^\s'\"<>?]*\?[^\s'\"<>()]+")
_KEYLIKE_RE = re.compile(r"^(?=.*[A-Za-z])(?=.*\d)[A-Za-z0-9_-]{20,}$")
_CONTENT_SEGMENTS = {"ipfs", "ipns"}  # the segment after these is a CID, not a key
_MIN_SECRET = 6  # shorter pieces are not searched for (they would mask ordinary words)


def redact(text: str, *known_urls: str | None) -> str:
    """`text` without URL credentials. `known_urls` (the configured RPC, broker, ledger, IPFS
    URLs): their secrets are also removed where they appear outside a URL."""
    for secret in sorted(_secrets(known_urls), key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_RE.sub(lambda m: _keep_trailing(m.group(0), redact_url), text)
    return _BARE_PATH_RE.sub(lambda m: _keep_trailing(m.group(0), _redact_path_query), text)


def redact_url(url: str) -> str:
    """One URL with its userinfo, query values, fragment and key-like path segments masked."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _redact_path_query(url)
    authority, slash, tail = rest.partition("/")
    if not slash:
        authority, qmark, query = authority.partition("?")
        tail = f"?{query}" if qmark else ""
    else:
        tail = "/" + tail
    if "@" in authority:
        authority = f"{MASK}@{authority.rsplit('@', 1)[1]}"
    return f"{scheme}://{authority}{_redact_path_query(tail)}"


def _keep_trailing(found: str, clean: Callable[[str], str]) -> str:
    """A URL quoted in prose often ends with the sentence's punctuation: keep it outside."""
    body = found.rstrip(".,;:!?")
    return clean(body) + found[len(body):]


def _redact_path_query(tail: str) -> str:
    tail, hash_mark, _fragment = tail.partition("#")
    path, qmark, query = tail.partition("?")
    segments = path.split("/")
    for i, segment in enumerate(segments):
        after_content = i > 0 and segments[i - 1].lower() in _CONTENT_SEGMENTS
        if not after_content and _KEYLIKE_RE.match(segment):
            segments[i] = MASK
    out = "/".join(segments)
    if qmark:
        pairs = [p.partition("=") for p in query.split("&")]
        out += "?" + "&".join(f"{name}={MASK}" if eq else MASK for name, eq, _ in pairs)
    return out + (f"#{MASK}" if hash_mark else "")


def _secrets(urls: tuple[str | None, ...]) -> set[str]:
    """The pieces of configured URLs that are secrets: password, user, query values, keys."""
    found: set[str] = set()
    for url in urls:
        if not url:
            continue
        try:
            parts = urlsplit(url)
            pieces = [parts.password, parts.username]
        except ValueError:  # a malformed URL: still strip what looks like userinfo
            parts, pieces = None, []
        if parts is not None:
            pieces += [value for _, _, value in (p.partition("=") for p in parts.query.split("&"))]
            pieces += [s for s in parts.path.split("/") if _KEYLIKE_RE.match(s)]
        for piece in pieces:
            if piece and len(piece) >= _MIN_SECRET:
                found |= {piece, unquote(piece)}
    return found


__all__ = ["MASK", "redact", "redact_url"]
