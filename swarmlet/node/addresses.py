"""Where this node can be reached: the one place that reads local network facts
(interfaces, their addresses, free ports) and decides the advertise address.

Everything here reads the kernel's state (ioctl, bind) and sends nothing on
the network. The daemon resolves every advertise address it is given (the
`daemon` command's flag and the one in init/join/restore requests) here, on
the host and in the network namespace it runs in.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from swarmlet import errors

_SIOCGIFFLAGS = 0x8913
_SIOCGIFADDR = 0x8915
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8
# Bridges and tunnels that Docker, libvirt, CNI or swarmlet's own overlays create: their
# addresses are host-local, so a peer could not reach us there.
_VIRTUAL_PREFIXES = (
    "docker",
    "br-",
    "veth",
    "virbr",
    "vxlan",
    "vx-",
    "cni",
    "flannel",
    "cali",
    "tun",
    "tap",
    "wg",
    "swl",
    "lxc",
    "kube",
)

NO_ADDRESS = "no non-loopback IPv4 address found: pass --advertise-addr"


@dataclass(frozen=True)
class Advertised:
    """The address other nodes reach this one at, and its three ports."""

    ip: str
    join_port: int
    raft_port: int
    api_port: int

    @property
    def join(self) -> str:
        return f"{self.ip}:{self.join_port}"

    @property
    def raft(self) -> str:
        return f"{self.ip}:{self.raft_port}"

    @property
    def api(self) -> str:
        return f"{self.ip}:{self.api_port}"

    def with_ip(self, ip: str) -> Advertised:
        return Advertised(ip, self.join_port, self.raft_port, self.api_port)


def interface_ipv4(name: str) -> str | None:
    """The IPv4 address of an interface that is up and not loopback, else None."""
    req = struct.pack("256s", name.encode()[:15])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            flags = struct.unpack_from("H", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req), 16)[0]
        except OSError:
            return None
        if not flags & _IFF_UP or flags & _IFF_LOOPBACK:
            return None
        try:
            res = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, req)
        except OSError:  # EADDRNOTAVAIL: no IPv4 address on it
            return None
    return socket.inet_ntoa(res[20:24])


def _interface_names() -> list[str]:
    """Interface names in kernel index order."""
    try:
        return [name for _, name in sorted(socket.if_nameindex())]
    except OSError:
        return []


def default_advertise_addr() -> str | None:
    """The first non-loopback IPv4 address, preferring physical-looking interfaces
    (in kernel index order) over bridges/tunnels and link-local addresses; None
    when the host has nothing but loopback."""
    fallback: str | None = None
    for name in _interface_names():
        addr = interface_ipv4(name)
        if addr is None or ipaddress.IPv4Address(addr).is_loopback:
            continue
        virtual = name.startswith(_VIRTUAL_PREFIXES) or ipaddress.IPv4Address(addr).is_link_local
        if not virtual:
            return addr
        fallback = fallback or addr
    return fallback


def resolve_advertise_addr(text: str) -> str:
    """An advertise address as given by a user: an IPv4 address or, like
    Docker, the name of an interface. IPv4 only: the Raft, gRPC and VXLAN
    addresses are all written as IP:port. Raises errors.Invalid."""
    text = text.strip()
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        if ip.version != 4:
            raise errors.Invalid(f"invalid advertise address {text!r}: expected an IPv4 address")
        return str(ip)
    if text in _interface_names():
        addr = interface_ipv4(text)
        if addr is None:
            raise errors.Invalid(f"interface {text!r} is down or has no IPv4 address")
        return addr
    raise errors.Invalid(f"invalid advertise address {text!r}: expected an IP address or a network interface name")


def choose_advertise_addr(text: str) -> str:
    """The advertise address for `text`, or the discovered default when it is
    empty. Raises errors.Invalid when neither gives one."""
    if text:
        return resolve_advertise_addr(text)
    addr = default_advertise_addr()
    if addr is None:
        raise errors.Invalid(NO_ADDRESS)
    return addr


def check_ports_free(ip: str, ports: Iterable[tuple[str, int]]) -> None:
    """Refuse up front when a port we need is taken (ports are (what, number)),
    instead of failing half-way through init or join with state written."""
    for what, port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((ip, port))
            except OSError as e:
                raise errors.FailedPrecondition(f"{what} port {ip}:{port} is not available: {e.strerror}") from None
