"""pysyncobj unpickles whatever reaches its port. The store must never open
that port without its encryption password: an unauthenticated pickle is then
rejected instead of executed. The control case shows the attack is real."""

from __future__ import annotations

import os
import pickle
import socket
import struct
import time
import zlib

from pysyncobj import SyncObj, SyncObjConf

from swarmlet.manager.store import Store
from tests.unit.test_store import free_port


class _Marker:
    """Unpickling this creates a file: proof that the payload was executed."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _send_pickle(port: int, path: str) -> None:
    data = zlib.compress(pickle.dumps(_Marker(path)), 3)
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(struct.pack("i", len(data)) + data)
        time.sleep(0.5)  # let the tick thread read the frame; nothing to poll on


def _wait_file(path: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.05)
    return False


def test_bare_pysyncobj_executes_a_pickle(tmp_path):
    port = free_port()
    obj = SyncObj(f"127.0.0.1:{port}", [], conf=SyncObjConf(autoTickPeriod=0.01))
    try:
        marker = str(tmp_path / "pwned")
        _send_pickle(port, marker)
        assert _wait_file(marker, 3), "control case: an unencrypted pysyncobj port should unpickle the payload"
    finally:
        obj.destroy_synchronous()


def test_store_port_rejects_unauthenticated_pickles(tmp_path):
    port = free_port()
    store = Store(f"127.0.0.1:{port}", [], str(tmp_path / "state"), b"s" * 32)
    try:
        marker = str(tmp_path / "pwned")
        _send_pickle(port, marker)
        assert not _wait_file(marker, 2)
    finally:
        store.close()
