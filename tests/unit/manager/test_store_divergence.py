"""Can the managers' applied states diverge under leader changes?

pysyncobj logs "truncating already-applied log entries ... state machine may
have diverged" when an append-entries message overlaps entries a follower has
already applied (a resend after a leader change, or pipelined appends). Here
three real stores (real pysyncobj on loopback, one process) run with
aggressive timings (tens of ms: spontaneous elections on a busy machine are
part of the point) while several threads write through every manager, and
leadership is moved over and over: the leader is killed and restarted on the
same address and state dir, or hands leadership over. Afterwards every
manager must have applied the same index and hold the same state (digest),
and every acknowledged write must be in it, once.

The finding (docs/operations.md): the truncated entries were committed, and
the leader resends the same commands at those indexes; `lastApplied` is not
moved back, so nothing is applied twice or differently.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time

from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from swarmlet.manager.store import RaftTimings, Store, StoreError
from tests.unit.manager.helpers import data_key_for
from tests.waiting import wait_for

SECRET = b"d" * 32
WRITERS = 4
CHURN_SECONDS = 12.0

AGGRESSIVE = RaftTimings(
    tick_period=0.002,
    append_entries_period=0.01,
    raft_min_timeout=0.05,
    raft_max_timeout=0.12,
    leader_fallback_timeout=0.3,
    compaction_min_entries=150,  # snapshots and their installs happen too
    compaction_min_time=2.0,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.CRITICAL)
        self.truncations = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "already-applied" in record.getMessage():
            self.truncations += 1


def test_applied_state_agrees_after_leader_churn_with_pipelined_writes(tmp_path):
    addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    lock = threading.Lock()
    stores: dict[str, Store] = {}

    def start(addr: str) -> None:
        s = Store(
            addr,
            [a for a in addrs if a != addr],
            str(tmp_path / addr.replace(":", "_")),
            SECRET,
            timings=AGGRESSIVE,
            data_key=data_key_for(addr),
        )
        with lock:
            stores[addr] = s

    def live() -> list[Store]:
        with lock:
            return list(stores.values())

    counter = _Count()
    plog = logging.getLogger("pysyncobj.syncobj")
    plog.addHandler(counter)
    for a in addrs:
        start(a)
    stop = threading.Event()
    acked: list[str] = []
    attempts = [0]
    changes = {"restarts": 0, "follower_restarts": 0, "transfers": 0}

    def writer(k: int) -> None:
        rng = random.Random(k)
        i = 0
        while not stop.is_set():
            ss = live()
            if not ss:
                continue
            s = rng.choice(ss)
            tid = f"w{k}-{i}"
            i += 1
            # Order-sensitive state besides the creates: a status merge on an
            # earlier task of this writer (only moves forward).
            actions = [st.put(pb.Task(id=tid, service_id="svc", desired_state=pb.RUNNING), create=True)]
            if i > 1:
                actions.append(
                    st.set_status(
                        f"w{k}-{rng.randrange(i - 1)}",
                        pb.TaskStatus(state=rng.choice([pb.ASSIGNED, pb.RUNNING, pb.COMPLETE]), message=tid),
                    )
                )
            attempts[0] += 1
            try:
                s.propose(actions, timeout=2.0)
                acked.append(tid)
            except StoreError:
                pass  # not acknowledged: may or may not be applied
            except Exception:
                pass  # the store was closed under us by the churn

    threads = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(WRITERS)]
    for t in threads:
        t.start()
    try:
        rng = random.Random(7)
        end = time.monotonic() + CHURN_SECONDS
        while time.monotonic() < end:
            leader = wait_for(lambda: next((s for s in live() if s.is_leader()), None), 30, "a leader", interval=0.01)
            r = rng.random()
            if r < 0.65:
                # Kill the leader, or a follower so that it lags behind and is
                # caught up by resends (in-process: destroy its Raft node), and
                # bring it back on the same address and state dir.
                victim = leader if r < 0.4 else rng.choice([s for s in live() if s is not leader] or [leader])
                with lock:
                    stores.pop(victim.self_addr)
                victim.close()
                time.sleep(rng.uniform(0.05, 0.6))  # churn pacing, not a wait for a condition
                start(victim.self_addr)
                changes["restarts" if victim is leader else "follower_restarts"] += 1
            else:
                leader._obj.transferLeadership()
                changes["transfers"] += 1
            time.sleep(rng.uniform(0.2, 0.6))  # churn pacing
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    try:
        ss = live()
        assert len(ss) == 3
        # Commit everything through the current leader, then wait for every
        # manager to have applied up to the same index.
        wait_for(lambda: _barrier(ss[0]), 60, "a barrier commits")

        def caught_up():
            st_ = [s.status() for s in ss]
            applied = {x["last_applied"] for x in st_}
            commit = max(x["commit_idx"] for x in st_)
            return len(applied) == 1 and applied.pop() >= commit

        wait_for(caught_up, 60, "every manager applied the same index")
        digests = {s.self_addr: s.state_digest() for s in ss}
        versions = {s.self_addr: s.version for s in ss}
        print(
            f"\n{attempts[0]} writes attempted, {len(acked)} acknowledged; changes {changes}; pysyncobj 'truncating already-applied' logged "
            f"{counter.truncations} times; versions {versions}"
        )
        assert len(set(digests.values())) == 1, f"applied states diverged: {digests} (versions {versions})"
        tasks = ss[0].snapshot().tasks
        missing = [t for t in acked if t not in tasks]
        assert not missing, f"acknowledged but missing: {missing[:10]} ({len(missing)})"
        assert len(acked) == len(set(acked))
        assert len(acked) >= 50, f"only {len(acked)} writes acknowledged: the churn starved the cluster"
        assert changes["restarts"] + changes["transfers"] >= 5
    finally:
        plog.removeHandler(counter)
        for s in live():
            s.close()


def _barrier(s: Store) -> bool:
    try:
        s.barrier(timeout=5)
        return True
    except StoreError:
        return False


def test_stale_append_entries_truncating_applied_entries_does_not_diverge(tmp_path):
    """The path behind pysyncobj's "truncating already-applied log entries"
    message, forced: a follower is handed an old append-entries message (as
    after a reset from a stale failure response, or a new leader's resend)
    whose prevLogIdx lies below its lastApplied. Its log is cut below what it
    applied; it must re-receive the same entries, apply nothing twice, and end
    with the same state as the others."""
    addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    stores = [
        Store(
            a,
            [p for p in addrs if p != a],
            str(tmp_path / a.replace(":", "_")),
            SECRET,
            timings=RaftTimings(compaction_min_entries=100000, compaction_min_time=3600),
            data_key=data_key_for(a),
        )
        for a in addrs
    ]
    counter = _Count()
    plog = logging.getLogger("pysyncobj.syncobj")
    plog.addHandler(counter)
    try:
        leader = wait_for(lambda: next((s for s in stores if s.is_leader()), None), 30, "a leader")
        follower = next(s for s in stores if s is not leader)
        transport = follower._obj._SyncObj__transport
        deliver = transport._onMessageReceivedCallback
        recorded: list[tuple[object, dict]] = []
        replay = {"armed": False, "done": 0}

        def hooked(node, message):
            # Runs on the follower's tick thread, like every message.
            if message.get("type") == "append_entries" and message.get("entries"):
                if replay["armed"] and recorded:
                    replay["armed"] = False
                    old_node, old = recorded[0]
                    deliver(old_node, old)
                    replay["done"] += 1
                recorded.append((node, dict(message)))
            deliver(node, message)

        transport._onMessageReceivedCallback = hooked
        for i in range(30):
            leader.propose([st.put(pb.Task(id=f"a{i}", service_id="svc"), create=True)])
        wait_for(lambda: follower.status()["last_applied"] >= leader.status()["last_applied"], 20, "follower applied")
        assert recorded[0][1]["prevLogIdx"] + 1 < follower.status()["last_applied"]
        replay["armed"] = True
        for i in range(30):
            leader.propose([st.put(pb.Task(id=f"b{i}", service_id="svc"), create=True)])
            leader.propose([st.set_status(f"b{i}", pb.TaskStatus(state=pb.RUNNING, message=str(i)))])
        assert replay["done"] == 1
        assert counter.truncations >= 1, "the stale message did not cut applied entries (path not exercised)"
        leader.barrier()

        def agree():
            st_ = [s.status() for s in stores]
            if len({x["last_applied"] for x in st_}) != 1:
                return False
            return len({s.state_digest() for s in stores}) == 1

        wait_for(agree, 30, "same applied index and digest on every manager")
        assert follower.version == leader.version == 90  # 30 + 60 batches, none applied twice
        assert len(follower.snapshot().tasks) == 60
    finally:
        plog.removeHandler(counter)
        for s in stores:
            s.close()
