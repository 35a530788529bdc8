"""Address discovery, on this host's real interfaces."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from swarmlet import errors
from swarmlet.node import addresses
from swarmlet.node.addresses import Advertised


def _up_interface() -> tuple[str, str] | None:
    """(name, IPv4) of an interface that is up, not loopback and has an address."""
    for _, name in socket.if_nameindex():
        addr = addresses.interface_ipv4(name)
        if addr is not None:
            return name, addr
    return None


def test_default_is_a_non_loopback_ipv4_address() -> None:
    addr = addresses.default_advertise_addr()
    if addr is None:  # a host with nothing but loopback has no answer
        assert _up_interface() is None
        return
    ip = ipaddress.IPv4Address(addr)
    assert not ip.is_loopback
    assert addr in {addresses.interface_ipv4(name) for _, name in socket.if_nameindex()}


def test_loopback_interface_is_never_chosen() -> None:
    assert addresses.interface_ipv4("lo") is None
    assert addresses.interface_ipv4("no-such-if0") is None


def test_ipv4_literal_is_normalised() -> None:
    assert addresses.resolve_advertise_addr(" 10.0.0.1 ") == "10.0.0.1"
    assert addresses.resolve_advertise_addr("127.0.0.1") == "127.0.0.1"  # explicit loopback is the user's choice


def test_interface_name_gives_its_address() -> None:
    found = _up_interface()
    if found is None:
        pytest.skip("no interface with an IPv4 address besides loopback")
    name, addr = found
    assert addresses.resolve_advertise_addr(name) == addr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("::1", "invalid advertise address '::1': expected an IPv4 address"),
        ("fe80::1", "expected an IPv4 address"),
        ("10.0.0", "expected an IP address or a network interface name"),
        ("no-such-if0", "invalid advertise address 'no-such-if0': expected an IP address or a network interface name"),
        ("lo", "interface 'lo' is down or has no IPv4 address"),
    ],
)
def test_bad_advertise_addresses(text: str, message: str) -> None:
    with pytest.raises(errors.Invalid, match=message.replace("(", r"\(")):
        addresses.resolve_advertise_addr(text)


def test_choose_uses_the_default_only_when_nothing_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(addresses, "default_advertise_addr", lambda: "192.0.2.1")
    assert addresses.choose_advertise_addr("") == "192.0.2.1"
    assert addresses.choose_advertise_addr("10.0.0.2") == "10.0.0.2"
    monkeypatch.setattr(addresses, "default_advertise_addr", lambda: None)
    with pytest.raises(errors.Invalid, match=addresses.NO_ADDRESS):
        addresses.choose_advertise_addr("")


def test_taken_port_is_refused_by_name() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(errors.FailedPrecondition, match=f"api port 127.0.0.1:{port} is not available"):
            addresses.check_ports_free("127.0.0.1", [("api", port)])
    addresses.check_ports_free("127.0.0.1", [("api", port)])  # free again once released


def test_advertised_addresses() -> None:
    a = Advertised("10.0.0.1", 4242, 4243, 4244)
    assert (a.join, a.raft, a.api) == ("10.0.0.1:4242", "10.0.0.1:4243", "10.0.0.1:4244")
    assert a.with_ip("10.0.0.9").api == "10.0.0.9:4244"
