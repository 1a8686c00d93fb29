"""The egress policy as a pure function of an address (no services). Destinations outside loopback
are only ever checked, never connected to: `no_connect` turns any connection attempt into a failure."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

import pytest

from executor.egress import EgressPolicy, EgressRefused, GuardedBackend, classify, embedded_ipv4
from executor.storage.base import InputUnavailable
from executor.storage.url import UrlStorage

KNOB = "(operator allow-list: COD_EGRESS_ALLOW)"


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Records (and refuses) every TCP connection attempt made through the socket module."""
    attempts: list[Any] = []

    def refuse(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        attempts.append(address)
        raise AssertionError(f"a connection to {address} was attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.mark.parametrize(("host", "reason"), [
    ("127.0.0.1", "127.0.0.1 is a loopback address"),
    ("127.8.9.10", "127.8.9.10 is a loopback address"),
    ("::1", "::1 is a loopback address"),
    ("169.254.169.254", "169.254.169.254 is a link-local address"),
    ("fe80::1", "fe80::1 is a link-local address"),
    ("10.0.0.1", "10.0.0.1 is a private address"),
    ("172.16.5.4", "172.16.5.4 is a private address"),
    ("192.168.1.1", "192.168.1.1 is a private address"),
    ("fd12:3456::1", "fd12:3456::1 is a private address"),
    ("100.64.0.1", "100.64.0.1 is a shared (carrier-grade NAT) address"),
    ("224.0.0.251", "224.0.0.251 is a multicast address"),
    ("ff02::1", "ff02::1 is a multicast address"),
    ("0.0.0.0", "0.0.0.0 is an unspecified address"),
    ("::", ":: is an unspecified address"),
    ("240.0.0.1", "240.0.0.1 is a reserved address"),
    ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1 is an IPv4-embedding form of 127.0.0.1, a loopback address"),
    ("::ffff:169.254.169.254",
     "::ffff:169.254.169.254 is an IPv4-embedding form of 169.254.169.254, a link-local address"),
    ("64:ff9b::a00:1", "64:ff9b::a00:1 is an IPv4-embedding form of 10.0.0.1, a private address"),
    ("2002:7f00:1::", "2002:7f00:1:: is an IPv4-embedding form of 127.0.0.1, a loopback address"),
])
def test_non_public_literals_are_refused_by_name_and_rule(host: str, reason: str,
                                                           no_connect: list[Any]) -> None:
    with pytest.raises(EgressRefused) as refused:
        EgressPolicy().check(host, 80)
    assert str(refused.value) == f"{reason} {KNOB}"
    assert no_connect == []


@pytest.mark.parametrize("host", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "[2a00:1450::1]"])
def test_public_literals_pass(host: str) -> None:
    assert EgressPolicy().check(host, 443) == [ipaddress.ip_address(host.strip("[]"))]


def test_a_name_resolving_to_loopback_is_refused_without_naming_the_address() -> None:
    with pytest.raises(EgressRefused) as refused:
        EgressPolicy().check("localhost", 80)
    assert str(refused.value) == f"localhost resolves to a loopback address {KNOB}"


def test_one_internal_address_among_public_ones_refuses_the_name(monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in ("8.8.8.8", "10.1.2.3")]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(EgressRefused, match=r"^data.example resolves to a private address"):
        EgressPolicy().check("data.example", 80)


def test_allow_list_by_cidr_and_by_host_name() -> None:
    policy = EgressPolicy.from_settings("10.20.0.0/16, 127.0.0.1,*.corp.example, localhost", [])
    assert policy.check("10.20.3.4", 80) == [ipaddress.ip_address("10.20.3.4")]
    assert policy.check("::ffff:10.20.3.4", 80)  # the mapped form of an allowed address
    assert policy.check("127.0.0.1", 8080)
    assert policy.check("localhost", 8080)
    with pytest.raises(EgressRefused, match=r"10.21.0.1 is a private address"):
        policy.check("10.21.0.1", 80)
    with pytest.raises(EgressRefused, match=r"127.0.0.2 is a loopback address"):
        policy.check("127.0.0.2", 80)
    policy.check_address(ipaddress.ip_address("10.9.9.9"), 80, name="files.corp.example")
    with pytest.raises(EgressRefused):
        policy.check_address(ipaddress.ip_address("10.9.9.9"), 80, name="corp.example.evil")


def test_the_nodes_own_services_stay_refused_even_when_allow_listed() -> None:
    policy = EgressPolicy.from_settings("127.0.0.0/8, 10.0.0.0/8",
                                        ["http://127.0.0.1:5001", "redis://localhost:6379/0",
                                         "10.1.1.1:5432"])
    assert policy.check("127.0.0.1", 8080)
    for host, port in (("127.0.0.1", 5001), ("127.0.0.5", 6379), ("10.1.1.1", 5432)):
        with pytest.raises(EgressRefused, match="one of this node's own services"):
            policy.check(host, port)
    with pytest.raises(EgressRefused, match=r"^localhost:5001 resolves to one of this node's own"):
        policy.check("localhost", 5001)
    assert policy.check("10.1.1.2", 5432)


def test_embedded_ipv4_and_classify() -> None:
    assert embedded_ipv4(ipaddress.ip_address("::ffff:1.2.3.4")) == ipaddress.ip_address("1.2.3.4")
    assert embedded_ipv4(ipaddress.ip_address("2606:4700::1")) is None
    assert embedded_ipv4(ipaddress.ip_address("::1")) is None
    assert classify(ipaddress.ip_address("93.184.216.34")) is None


def test_url_fetch_to_internal_literals_never_connects(no_connect: list[Any], tmp_path: Path) -> None:
    storage = UrlStorage(1024, 5)
    for url, reason in (
            ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
            ("http://10.0.0.1/", "10.0.0.1 is a private address"),
            ("http://[::ffff:127.0.0.1]:8080/x",
             "::ffff:127.0.0.1 is an IPv4-embedding form of 127.0.0.1, a loopback address")):
        with pytest.raises(InputUnavailable) as refused:
            storage.fetch(url, tmp_path / "out")
        assert str(refused.value) == f"input {url} refused: {reason} {KNOB}"
    assert no_connect == []
    assert not (tmp_path / "out").exists()


def test_unix_sockets_are_refused() -> None:
    backend = GuardedBackend(EgressPolicy(), deadline=1e18, io_timeout_s=1)
    with pytest.raises(EgressRefused):
        backend.connect_unix_socket("/var/run/docker.sock")
