"""Local network facts, read without sending any traffic."""

from __future__ import annotations

import fcntl
import socket
import struct

_SIOCGIFADDR = 0x8915


def interface_addrs() -> list[tuple[str, str]]:
    """(interface, IPv4 address) of every interface that has one."""
    out = []
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _, name in socket.if_nameindex():
            try:
                raw = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue  # no IPv4 address on it
            out.append((name, socket.inet_ntoa(raw[20:24])))
    finally:
        s.close()
    return out


def default_advertise_addr() -> str:
    """The first non-loopback IPv4 address (Docker's choice when there is one
    obvious address); 127.0.0.1 when the host has nothing else."""
    for _name, addr in interface_addrs():
        if not addr.startswith("127."):
            return addr
    return "127.0.0.1"
