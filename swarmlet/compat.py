"""Repairs to third-party side effects.

pysyncobj 0.3.17 (pysyncobj/win_inet_pton.py, imported by its TCP transport)
replaces `socket.inet_ntop` with a Windows-only ctypes version on every
platform: only its inet_pton assignment is guarded by `os.name == 'nt'`.
pyroute2 binds `socket.inet_ntop` at import time, so if pysyncobj was imported
first, pyroute2 can no longer decode any IPv4/IPv6 attribute (addresses,
VXLAN local, FDB destinations) and hands back raw bytes. The C implementation
is still in `_socket`: put it back.
"""

from __future__ import annotations

import _socket
import socket


def restore_inet_ntop() -> None:
    socket.inet_ntop = _socket.inet_ntop
