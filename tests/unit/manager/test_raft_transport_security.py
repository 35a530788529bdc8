"""pysyncobj unpickles whatever reaches its port. The store must never open
that port without its encryption password: an unauthenticated pickle is then
rejected instead of executed. The control case shows the attack is real."""

from __future__ import annotations

import os
import pickle
import socket
import struct
import zlib

from pysyncobj import SyncObj, SyncObjConf

from swarmlet.manager.store import Store
from tests.unit.manager.helpers import DATA_KEY
from tests.unit.manager.test_store import free_port
from tests.waiting import wait_for


class _Marker:
    """Unpickling this creates a file: proof that the payload was executed."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _send_pickle(port: int, path: str) -> socket.socket:
    """Send a pickled payload as one pysyncobj frame. The connection is
    returned open: closing it at once could race the tick thread reading it."""
    data = zlib.compress(pickle.dumps(_Marker(path)), 3)
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.sendall(struct.pack("i", len(data)) + data)
    return s


def _file_appears(path: str, timeout: float) -> bool:
    try:
        wait_for(lambda: os.path.exists(path), timeout, f"{path} created")
        return True
    except AssertionError:
        return False


def test_bare_pysyncobj_executes_a_pickle(tmp_path):
    port = free_port()
    obj = SyncObj(f"127.0.0.1:{port}", [], conf=SyncObjConf(autoTickPeriod=0.01))
    try:
        marker = str(tmp_path / "pwned")
        with _send_pickle(port, marker):
            assert _file_appears(marker, 3), "control case: an unencrypted pysyncobj port should unpickle the payload"
    finally:
        obj.destroy_synchronous()


def test_store_port_rejects_unauthenticated_pickles(tmp_path):
    port = free_port()
    store = Store(f"127.0.0.1:{port}", [], str(tmp_path / "state"), b"s" * 32, data_key=DATA_KEY)
    try:
        marker = str(tmp_path / "pwned")
        with _send_pickle(port, marker):
            assert not _file_appears(marker, 2)
    finally:
        store.close()
