"""`https://` and `http://` inputs: streamed to disk through the egress policy, with a size cap and a
wall-clock deadline on the whole download.

Every connection (the first and each redirect hop) goes through `executor.egress.GuardedBackend`,
which refuses non-public and node-own addresses at connect time and bounds every socket read by the
time left, so neither an internal service nor a slow drip can be reached or hold the worker.
"""

from __future__ import annotations

import hashlib
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpcore
import httpx

from executor.egress import (
    DeadlineExceeded,
    EgressPolicy,
    EgressRefused,
    GuardedBackend,
    node_service_urls,
)
from executor.storage.base import InputUnavailable
from protocol.spec import parse_size

if TYPE_CHECKING:
    from executor.config import WorkerSettings
    from protocol.ipfs import KuboClient

MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}
_SCHEMES = ("http", "https")
_HEADERS = [(b"Accept-Encoding", b"identity"), (b"User-Agent", b"cod-executor")]
_ERRORS = (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError,
           httpcore.UnsupportedProtocol, httpcore.PoolTimeout)


def from_settings(settings: WorkerSettings, kubo: KuboClient) -> UrlStorage:
    """The `url` provider of `executor.storage.PROVIDERS`."""
    return UrlStorage(parse_size(settings.url_max_size), settings.url_timeout_s,
                      egress_policy(settings), settings.url_read_timeout_s)


def egress_policy(settings: WorkerSettings) -> EgressPolicy:
    """The node's one egress policy: the operator's allow-list; its own services always refused."""
    services = node_service_urls([settings.ipfs_api, settings.broker_url], settings.egress_deny)
    return EgressPolicy.from_settings(settings.egress_allow, services)


class UrlStorage:
    def __init__(self, max_bytes: int, timeout_s: float, policy: EgressPolicy | None = None,
                 read_timeout_s: float = 30.0) -> None:
        self._max = max_bytes
        self._timeout = timeout_s
        self._read_timeout = read_timeout_s
        self._policy = policy if policy is not None else EgressPolicy()  # default: public only
        self._ssl: ssl.SSLContext | None = None

    def content_id(self, source: str) -> None:
        return None  # what a URL serves can change: only its bytes identify it

    def fetch(self, source: str, destination: Path) -> str:
        """Download to `destination`; the whole download must finish within the deadline."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        backend = GuardedBackend(self._policy, time.monotonic() + self._timeout, self._read_timeout)
        try:
            if self._ssl is None:  # loading the CA bundle takes a while: once per worker process
                self._ssl = httpx.create_ssl_context()
            with httpcore.ConnectionPool(ssl_context=self._ssl,
                                         network_backend=backend, retries=0) as pool:
                return self._follow(pool, source, destination)
        except EgressRefused as exc:
            raise InputUnavailable(f"input {source} refused: {exc}") from exc
        except DeadlineExceeded as exc:
            raise InputUnavailable(f"input {source} exceeded the download deadline of "
                                   f"{self._timeout:g} s") from exc
        except InputUnavailable:
            raise
        except (*_ERRORS, httpx.InvalidURL) as exc:
            raise InputUnavailable(f"input {source} not available: {exc or type(exc).__name__}"
                                   ) from exc

    def _follow(self, pool: httpcore.ConnectionPool, source: str, destination: Path) -> str:
        """GET `source`, following at most MAX_REDIRECTS redirects by hand (each hop is a new
        connection through the guarded backend, so each is checked)."""
        url = httpx.URL(source)
        for hop in range(MAX_REDIRECTS + 1):
            if url.scheme not in _SCHEMES:
                raise InputUnavailable(f"input {source} refused: redirect to a {url.scheme}: URL "
                                       "(only http and https are fetched)")
            target = httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port,
                                  target=url.raw_path)
            try:
                with pool.stream("GET", target, headers=_HEADERS) as response:
                    location = _header(response, b"location")
                    if response.status in _REDIRECTS and location is not None:
                        if hop == MAX_REDIRECTS:
                            raise InputUnavailable(f"input {source} not available: more than "
                                                   f"{MAX_REDIRECTS} redirects")
                        url = url.join(location)
                        continue
                    if response.status != 200:
                        raise InputUnavailable(f"input {source} not available: HTTP "
                                               f"{response.status}")
                    return self._save(source, response, destination)
            except EgressRefused as exc:
                if hop == 0:
                    raise
                raise EgressRefused(exc.host, f"redirect to {url}: {exc}") from exc
        raise AssertionError("unreachable")

    def _save(self, source: str, response: httpcore.Response, destination: Path) -> str:
        declared = _header(response, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max:
            raise self._too_large(source)
        digest = hashlib.sha256()
        written = 0
        try:
            with destination.open("wb") as out:
                for chunk in response.iter_stream():
                    written += len(chunk)
                    if written > self._max:
                        raise self._too_large(source)
                    out.write(chunk)
                    digest.update(chunk)
        except BaseException:
            destination.unlink(missing_ok=True)  # a partial input must not look like a whole one
            raise
        return f"sha256:{digest.hexdigest()}"

    def _too_large(self, source: str) -> InputUnavailable:
        return InputUnavailable(f"input {source} is larger than the node's URL input cap of "
                                f"{self._max} bytes")


def _header(response: httpcore.Response, name: bytes) -> str | None:
    for key, value in response.headers:
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None
