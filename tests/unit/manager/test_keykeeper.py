"""Key keepers on three real managers (loopback): a Raft secret rotation
reaches every manager and completes while writes go on, autolock wraps
every manager's data key, and a manager that was down during a rotation
fetches the new secret and comes back."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest

from swarmlet import atrest, errors
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from swarmlet.manager import keykeeper as kk
from swarmlet.manager.control.api import ControlAPI
from swarmlet.manager.keykeeper import FetchedSecret, KeyKeeper
from swarmlet.manager.store import Store
from tests.unit.manager import helpers as h
from tests.waiting import wait_for


class Managers:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.addrs = [f"127.0.0.1:{h.free_port()}" for _ in range(3)]
        self.stores: dict[str, Store] = {}
        self.keepers: dict[str, KeyKeeper] = {}
        self.saved: dict[str, list[tuple[bytes, int]]] = {a: [] for a in self.addrs}
        self.wrapped: dict[str, list[str | None]] = {a: [] for a in self.addrs}
        self.fetch: dict[str, FetchedSecret | None] = {}
        for a in self.addrs:
            self.start(a, h.RAFT_SECRET)
        leader = wait_for(self.leader, 20, "a leader")
        ids = {a: f"manager{i}" + "0" * 18 for i, a in enumerate(self.addrs)}
        h.seed(leader, h.new_cluster(), *[h.manager_node(a, f"127.0.0.1:{4244 + i}", ids[a]) for i, a in enumerate(self.addrs)])

    def start(self, addr: str, secret: bytes, epoch: int = 0) -> None:
        partners = [p for p in self.addrs if p != addr]
        store = Store(
            addr, partners, str(self.tmp / addr.replace(":", "_")), secret, data_key=h.data_key_for(addr), raft_secret_epoch=epoch
        )
        keeper = KeyKeeper(
            store,
            lambda secret, epoch: self.saved[addr].append((secret, epoch)),
            lambda key: self.wrapped[addr].append(key),
            lambda: self.fetch.get(addr),
        )
        self.stores[addr], self.keepers[addr] = store, keeper
        keeper.start()

    def stop(self, addr: str) -> None:
        self.keepers.pop(addr).stop()
        self.stores.pop(addr).close()

    def leader(self) -> Store | None:
        leaders = [s for s in self.stores.values() if s.is_leader()]
        return leaders[0] if len(leaders) == 1 else None

    def control(self) -> ControlAPI:
        leader = wait_for(self.leader, 20, "a leader")
        return ControlAPI(leader, lambda addr: grpc.insecure_channel(addr))

    def close(self) -> None:
        for a in list(self.stores):
            self.stop(a)


@pytest.fixture
def managers(tmp_path: Path):
    m = Managers(tmp_path)
    try:
        yield m
    finally:
        m.close()


def test_a_rotation_reaches_every_manager_and_completes_while_writes_go_on(managers: Managers) -> None:
    failures: list[BaseException] = []
    done = threading.Event()

    writes = [0]

    def writer() -> None:
        while not done.is_set():
            leader = managers.leader()
            if leader is None:
                time.sleep(0.02)
                continue
            try:
                leader.propose([st.put(pb.Task(id=f"w{writes[0]}", service_id="s"), create=True)], timeout=5)
                writes[0] += 1
            except Exception as e:  # noqa: BLE001
                failures.append(e)

    t = threading.Thread(target=writer)
    t.start()
    try:
        status = managers.control().security.rotate_raft_secret(cpb.RotateRaftSecretRequest())
        assert status.epoch == 1 and status.rotating and status.reason == "rotated on demand"
        leader = wait_for(managers.leader, 10, "a leader")
        new = leader.snapshot().cluster.raft_secret  # type: ignore[union-attr]
        assert new != h.RAFT_SECRET and len(new) == 32
        # Every manager took it and saved it; the previous one is retired by the leader.
        wait_for(
            lambda: all(
                s.keyring.epoch == 1 and s.keyring.secret == new and len(s.keyring.accepted) == 1
                for s in managers.stores.values()
            ),
            20,
            "every manager on the new secret only",
        )
        cluster = leader.snapshot().cluster
        assert cluster is not None and cluster.raft_secret_previous == b""
        assert all((new, 1) in saved for saved in managers.saved.values())
        after = writes[0]
        wait_for(lambda: writes[0] >= after + 3, 10, "writes going on after the rotation")
    finally:
        done.set()
        t.join(10)
    assert not failures, failures[:3]
    assert not managers.control().security.raft_secret_status(cpb.RaftSecretStatusRequest()).rotating


def test_autolock_wraps_every_managers_data_key_and_follows_the_unlock_key(managers: Managers) -> None:
    sec = managers.control().security
    with pytest.raises(errors.FailedPrecondition, match="no unlock key is set"):
        sec.unlock_key(cpb.UnlockKeyRequest())
    key = sec.set_autolock(cpb.SetAutolockRequest(autolock=True)).unlock_key
    assert key.startswith("SWLKEY-1-") and sec.unlock_key(cpb.UnlockKeyRequest()).unlock_key == key
    wait_for(lambda: all(w and w[-1] == key for w in managers.wrapped.values()), 10, "every data key wrapped by the key")
    rotated = sec.unlock_key(cpb.UnlockKeyRequest(rotate=True)).unlock_key
    assert rotated != key
    wait_for(lambda: all(w[-1] == rotated for w in managers.wrapped.values()), 10, "rewrapped by the new key")
    assert sec.set_autolock(cpb.SetAutolockRequest(autolock=False)).unlock_key == ""
    wait_for(lambda: all(w[-1] is None for w in managers.wrapped.values()), 10, "stored unwrapped")
    leader = wait_for(managers.leader, 10, "a leader")
    assert leader.snapshot().cluster.unlock_key == ""  # type: ignore[union-attr]


def test_a_manager_down_during_a_rotation_fetches_the_new_secret(managers: Managers, monkeypatch) -> None:
    monkeypatch.setattr(kk, "RETIRE_GRACE", 1.0)
    monkeypatch.setattr(kk, "CATCH_UP_AFTER", 0.5)
    monkeypatch.setattr(kk, "CATCH_UP_EVERY", 0.5)
    leader = wait_for(managers.leader, 10, "a leader")
    gone = next(a for a in managers.addrs if a != leader.self_addr)
    managers.stop(gone)
    managers.control().security.rotate_raft_secret(cpb.RotateRaftSecretRequest())
    # Without it, after the grace period, the old secret is retired.
    wait_for(lambda: not leader.snapshot().cluster.raft_secret_previous, 15, "the previous secret retired")  # type: ignore[union-attr]
    cluster = leader.snapshot().cluster
    assert cluster is not None
    # It returns with the old secret: nobody lets it in...
    managers.start(gone, h.RAFT_SECRET)
    back = managers.stores[gone]
    time.sleep(1.5)
    assert len(back.reachable()) == 1
    # ...until it fetches the current one from another manager (over mTLS
    # in the daemon; here the test hands it what the leader would answer).
    managers.fetch[gone] = FetchedSecret(cluster.raft_secret_epoch, cluster.raft_secret, b"")
    wait_for(lambda: len(back.reachable()) == 3, 20, "the returning manager reconnects with the fetched secret")
    assert (cluster.raft_secret, 1) in managers.saved[gone]
    wait_for(lambda: back.snapshot().cluster is not None and back.snapshot().cluster.raft_secret_epoch == 1, 20, "caught up")  # type: ignore[union-attr]


def test_an_old_unlock_key_stays_usable_only_for_what_it_wrapped() -> None:
    """The DEK file a manager wrote before a rotation opens with the old key
    (a manager that was down during it), not with a random one."""
    dek = atrest.DataKey.generate()
    old = atrest.new_unlock_key()
    raw = atrest.dek_file_bytes(dek, old)
    assert atrest.read_dek_file(raw, old).raw == dek.raw
    with pytest.raises(atrest.InvalidUnlockKey):
        atrest.read_dek_file(raw, atrest.new_unlock_key())
