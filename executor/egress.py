"""The one place that decides what the worker may reach on a job's behalf.

A requester chooses every URL in a spec, so a fetch from the worker host must never reach the
operator's own network: loopback, link-local (cloud metadata), private, shared, multicast and other
non-public addresses are refused, as are the node's own services, unless the operator allow-lists
them (`COD_EGRESS_ALLOW`; the node's services stay refused even then).

The check runs at connect time on the very address connected to (`GuardedBackend`, an httpcore
network backend): a host name is resolved once, every address checked, and the socket opened to a
checked address, so DNS rebinding between check and connect is impossible and every redirect hop is
checked too. The same backend enforces a wall-clock deadline on every socket operation, so a server
dripping one byte at a time is cut at the deadline.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import httpcore

from executor.storage.base import InputUnavailable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_KNOB = "COD_EGRESS_ALLOW"
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598 carrier-grade NAT: not public, not "private"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_V4_COMPAT = ipaddress.ip_network("::/96")
_DEFAULT_PORTS = {"http": 80, "https": 443, "redis": 6379, "rediss": 6379, "postgresql": 5432,
                  "postgres": 5432}


class EgressRefused(InputUnavailable):
    """The policy refuses a destination; the message names the host and the rule."""

    def __init__(self, host: str, rule: str) -> None:
        super().__init__(rule)
        self.host = host
        self.rule = rule


class DeadlineExceeded(Exception):
    """The whole transfer's wall-clock deadline passed (raised by the guarded streams)."""


@dataclass(frozen=True)
class EgressPolicy:
    """Operator-set egress rules. `deny` holds (address, port) of the node's own services; an
    address of None means "that port on any address of this node" (a service on 0.0.0.0)."""

    allow_networks: tuple[IPNetwork, ...] = ()
    allow_hosts: tuple[str, ...] = ()  # lower case; "*.example.org" allows its subdomains
    deny: tuple[tuple[IPAddress | None, int], ...] = ()
    resolve_timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, allow: str, node_services: Iterable[str]) -> EgressPolicy:
        """`allow`: comma-separated CIDRs, addresses or host names; `node_services`: URLs (or
        host:port) of this node's services, never reachable."""
        networks: list[IPNetwork] = []
        hosts: list[str] = []
        for entry in (e.strip() for e in allow.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                hosts.append(entry.lower().rstrip("."))
        deny: list[tuple[IPAddress | None, int]] = []
        for url in node_services:
            deny.extend(_service_addresses(url))
        return cls(tuple(networks), tuple(hosts), tuple(deny))

    def check(self, host: str, port: int, timeout: float | None = None) -> list[IPAddress]:
        """Resolve `host` and return its addresses if every one may be reached on `port`;
        raise `EgressRefused` otherwise (one bad address refuses the host: no lottery)."""
        addresses = _resolve(host, port, self.resolve_timeout_s if timeout is None
                             else min(timeout, self.resolve_timeout_s))
        literal = _literal(host) is not None
        for address in addresses:
            if literal:
                self.check_address(address, port, shown=host.strip("[]"))
            else:
                self.check_address(address, port, name=host)
        return addresses

    def check_address(self, address: IPAddress, port: int, name: str | None = None,
                      shown: str | None = None) -> None:
        """Refuse `address:port` (reached through host `name`, if any; written `shown` in the URL)
        unless the policy allows it. A host name's addresses are not named in the reason: it goes
        on-chain, and must not map the operator's internal DNS for a stranger."""
        text = shown or str(address)
        subject = f"{name} resolves to" if name else f"{text} is"
        if self._is_node_service(address, port):
            where = f"[{text}]:{port}" if address.version == 6 else f"{text}:{port}"
            head = f"{name}:{port} resolves to" if name else f"{where} is"
            raise EgressRefused(name or text, f"{head} one of this node's own services (never allowed)")
        if self._allowed(address, name):
            return
        rule = classify(address)
        if rule is None and _is_local_address(address):
            rule = "an address of this node"
        if rule is not None:
            raise EgressRefused(name or text, f"{subject} {rule} (operator allow-list: {ALLOW_KNOB})")

    def _allowed(self, address: IPAddress, name: str | None) -> bool:
        if name is not None:
            lowered = name.lower().rstrip(".")
            for entry in self.allow_hosts:
                if lowered == entry or (entry.startswith("*.") and lowered.endswith(entry[1:])):
                    return True
        candidates = [address, *([e] if (e := embedded_ipv4(address)) else [])]
        return any(a in network for a in candidates for network in self.allow_networks)

    def _is_node_service(self, address: IPAddress, port: int) -> bool:
        candidates = [address, *([e] if (e := embedded_ipv4(address)) else [])]
        for denied, denied_port in self.deny:
            if denied_port != port:
                continue
            if denied is None:
                if any(c.is_loopback or c.is_unspecified or _is_local_address(c) for c in candidates):
                    return True
            elif denied in candidates:
                return True
        return False


def classify(address: IPAddress) -> str | None:
    """Why `address` is not a public destination (e.g. "a loopback address"), or None."""
    inner = embedded_ipv4(address)
    if inner is not None:
        reason = classify(inner)
        if reason is not None:
            return f"an IPv4-embedding form of {inner}, {reason}"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "not a public address"
    return None


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, NAT64, Teredo)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or (address in _V4_COMPAT and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _resolve(host: str, port: int, timeout: float) -> list[IPAddress]:
    """getaddrinfo with a deadline (a hostile name server can answer slowly): on a thread."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    box: list[list[IPAddress] | BaseException] = []

    def work() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            box.append(list(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%")[0])
                                          for i in infos)))
        except (OSError, UnicodeError, ValueError) as exc:
            box.append(exc)

    thread = threading.Thread(target=work, daemon=True, name="egress-resolve")
    thread.start()
    thread.join(max(timeout, 0.0))
    if not box:
        raise DeadlineExceeded(f"resolving {host} took longer than {timeout:g} s")
    result = box[0]
    if isinstance(result, BaseException):
        raise InputUnavailable(f"host {host} does not resolve ({result})")
    if not result:
        raise InputUnavailable(f"host {host} does not resolve")
    return result


def _service_addresses(url: str) -> list[tuple[IPAddress | None, int]]:
    """The (address, port) pairs a service URL names; a loopback or wildcard host means the port
    on every address of this node (the service may listen on all of them)."""
    parts = urlsplit(url if "://" in url else f"tcp://{url}")
    if not parts.hostname:
        return []
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    if port is None:
        return []
    try:
        addresses = _resolve(parts.hostname, port, 5.0)
    except (InputUnavailable, DeadlineExceeded):
        return []
    pairs: list[tuple[IPAddress | None, int]] = []
    for address in addresses:
        pairs.append((None, port) if address.is_loopback or address.is_unspecified else (address, port))
    return pairs


@cache
def _nonlocal_bind() -> bool:
    """With net.ipv4.ip_nonlocal_bind every bind succeeds: the bind test would refuse everything."""
    return _binds(ipaddress.ip_address("192.0.2.1"))  # TEST-NET-1: never a real local address


def _binds(address: IPAddress) -> bool:
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(address), 0))  # no packet leaves: bind only checks local ownership
        return True
    except OSError:
        return False


def _is_local_address(address: IPAddress) -> bool:
    """Whether `address` is assigned to this host (its public address reaches 0.0.0.0 services)."""
    return not _nonlocal_bind() and _binds(address)


class GuardedBackend(httpcore.NetworkBackend):
    """Connects only to addresses the policy allows, and bounds every socket operation by the
    transfer's deadline (`time.monotonic()` value) and the per-operation `io_timeout_s`."""

    def __init__(self, policy: EgressPolicy, deadline: float, io_timeout_s: float) -> None:
        self._policy = policy
        self._deadline = deadline
        self._io_timeout = io_timeout_s
        self._inner = httpcore.SyncBackend()

    def budget(self, timeout: float | None) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("deadline passed")
        return min(remaining, self._io_timeout, timeout if timeout is not None else remaining)

    def expired(self) -> bool:
        return time.monotonic() >= self._deadline

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
                    ) -> httpcore.NetworkStream:
        addresses = self._policy.check(host, port, self.budget(timeout))
        error: Exception | None = None
        for address in addresses:
            try:
                stream = self._inner.connect_tcp(str(address), port, self.budget(timeout),
                                                 local_address, socket_options)
            except httpcore.ConnectTimeout as exc:
                if self.expired():
                    raise DeadlineExceeded("deadline passed while connecting") from exc
                error = exc
            except httpcore.ConnectError as exc:
                error = exc
            else:
                return _GuardedStream(stream, self)
        assert error is not None
        raise error

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
                            ) -> httpcore.NetworkStream:
        raise EgressRefused(path, f"{path} is a unix socket (never allowed)")

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, max(self._deadline - time.monotonic(), 0.0)))


class _GuardedStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, backend: GuardedBackend) -> None:
        self._inner = inner
        self._backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return self._inner.read(max_bytes, self._backend.budget(timeout))
        except httpcore.ReadTimeout as exc:
            if self._backend.expired():
                raise DeadlineExceeded("deadline passed while reading") from exc
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        try:
            self._inner.write(buffer, self._backend.budget(timeout))
        except httpcore.WriteTimeout as exc:
            if self._backend.expired():
                raise DeadlineExceeded("deadline passed while writing") from exc
            raise

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        try:  # SNI and certificate checks use the URL's host name, not the address connected to
            tls = self._inner.start_tls(ssl_context, server_hostname, self._backend.budget(timeout))
        except httpcore.ConnectTimeout as exc:
            if self._backend.expired():
                raise DeadlineExceeded("deadline passed during the TLS handshake") from exc
            raise
        return _GuardedStream(tls, self._backend)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def node_service_urls(urls: Sequence[str], extra: str) -> list[str]:
    """The node's service URLs from its settings plus the operator's comma-separated extras."""
    return [*urls, *(e.strip() for e in extra.split(",") if e.strip())]
