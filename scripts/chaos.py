#!/usr/bin/env python3
"""The fault campaign of issue 14: real daemons, real faults, then a check
that nothing acknowledged was lost, nothing was applied twice, and nothing
runs twice.

    python scripts/chaos.py [--faults 120] [--seed 1] [--prefix kf --subnet 33] [--report out.json]

A 5-host testbed: h1-h3 managers (their state directories on loop-mounted
ext4 images, so that power can be cut: scripts/powercut.py), h4 and h5
workers. A client writes through every manager (one thread per manager, as
the CLI does: a request id per call, retried while that can help,
cli/retry.py) and records every acknowledged and every failed write: service
creates and removes, and compare-and-set updates of a counter (a label)
on a service of its own. Two services run containers throughout: `web`
(6 replicas, rolling updates) and `glob` (global).

Faults, in a balanced random order (each kind in turn, shuffled per round):
  kill-leader        SIGKILL of the leader's daemon, restarted 1-4 s later
  pause-leader       SIGSTOP of the leader's daemon for 2-6 s, then SIGCONT
  partition-leader   the leader's host cut off by iptables in its namespace, 3-8 s
  partition-worker   the same for a worker
  powercut           power cut (powercut.py) of the leader, or of every manager at once
  dockerd-worker     a worker's dockerd SIGKILLed and restarted
  agent-in-update    a worker's daemon SIGKILLed in the middle of a rolling update of web
  restart-managers   every manager SIGKILLed and restarted
  membership         h5 promoted to manager, a leader fault while it is one, then demoted
After each fault everything is healed and the campaign waits until a leader
leads every manager and every node is READY (a recovery that does not come
is itself a finding).

Afterwards, with the writers stopped: every acknowledged create exists
exactly once (unless an acknowledged remove followed), no acknowledged
remove left its service; a failed write found applied was reported as
"may have been applied", never as failed outright; every counter holds its
last acknowledged value or the value of a later possibly-applied write;
state digests are equal on all managers; once settled, every slot of `web`
runs exactly one container and `glob` one per node (each engine's
`docker ps` is the ground truth), no container runs for a task the store
does not want running there, and no task is left ORPHANED.

Prints a table (docs/operations.md, "Fault campaign") and exits 1 on any
violation. The testbed is removed at the end unless --keep.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(0, str(SCRIPTS.parent))

import grpc  # noqa: E402
import powercut  # noqa: E402
import testbed as tb  # noqa: E402

from swarmlet.api import control_pb2 as cpb  # noqa: E402
from swarmlet.api import control_pb2_grpc  # noqa: E402
from swarmlet.api import objects_pb2 as pb  # noqa: E402
from swarmlet.cli import retry  # noqa: E402

IMAGE = tb.IMAGE_TAG
WEB_REPLICAS = 6
KINDS = (
    "kill-leader",
    "pause-leader",
    "partition-leader",
    "partition-worker",
    "powercut",
    "dockerd-worker",
    "agent-in-update",
    "restart-managers",
    "membership",
)
RECOVERY_TIMEOUT = 150.0
SETTLE_TIMEOUT = 400.0
T = TypeVar("T")


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def poll(predicate: Callable[[], T], timeout: float, interval: float = 0.5) -> T | None:
    """predicate() once it is truthy, or None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:
            value = None  # a daemon restarting, a socket not there yet
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def stub(host: tb.Host) -> control_pb2_grpc.ControlStub:
    return control_pb2_grpc.ControlStub(grpc.insecure_channel(f"unix://{host.swarmlet_sock}"))


def info(host: tb.Host) -> cpb.InfoResponse | None:
    try:
        return stub(host).Info(cpb.InfoRequest(), timeout=5)
    except grpc.RpcError:
        return None


# --------------------------------------------------------------------------
# the client


@dataclasses.dataclass
class Write:
    op: str  # create | remove | update
    name: str
    manager: str
    acked: bool
    value: int = 0  # update: the counter value written
    maybe_applied: bool = False
    error: str = ""
    t: float = 0.0
    retried: int = 0  # failed attempts before the last (same request id)
    unknown_attempts: int = 0  # of which the outcome was unknown


class Writer(threading.Thread):
    """Writes through one manager's socket until stopped."""

    def __init__(self, host: tb.Host, seed: int, stop: threading.Event, pace: float) -> None:
        super().__init__(name=f"writer-{host.name}", daemon=True)
        self.host = host
        self.rng = random.Random(seed)
        self.stop = stop
        self.pace = pace
        self.writes: list[Write] = []
        self.live: list[str] = []  # acknowledged creates not removed (as far as this writer knows)
        self.n = 0
        self.counter = f"k-{host.name}"

    def run(self) -> None:
        while not self.stop.is_set():
            op = self.rng.choices(["create", "remove", "update"], weights=[6, 2, 2])[0]
            try:
                if op == "remove" and self.live:
                    self._remove()
                elif op == "update":
                    self._update()
                else:
                    self._create()
            except Exception as e:  # a bug here must not end the campaign silently
                log(f"{self.name}: {type(e).__name__}: {e}")
            self.stop.wait(self.rng.uniform(0.5, 1.5) * self.pace)

    def _record(self, w: Write) -> None:
        w.t = time.time()
        self.writes.append(w)

    def _call(self, method: Callable[..., Any], request: Any, w: Write) -> Any:
        def observe(o: retry.Outcome) -> None:
            w.retried += 1
            w.unknown_attempts += o.maybe_applied

        try:
            resp = retry.call_write(method, request, timeout=30, observe=observe)
        except retry.WriteFailed as f:
            w.acked = False
            w.maybe_applied = f.maybe_applied or retry.MAYBE_APPLIED in (f.error.details() or "")
            w.error = f"{f.error.code().name}: {f.error.details()}"
            self._record(w)
            return None
        w.acked = True
        self._record(w)
        return resp

    def _create(self) -> None:
        name = f"c-{self.host.name}-{self.n}"
        self.n += 1
        spec = pb.ServiceSpec(
            name=name,
            task=pb.TaskSpec(container=pb.ContainerSpec(image=IMAGE, command=["sleep", "1"])),
            replicated=pb.ReplicatedService(replicas=0),
        )
        w = Write("create", name, self.host.name, acked=False)
        if self._call(stub(self.host).CreateService, cpb.CreateServiceRequest(spec=spec), w) is not None:
            self.live.append(name)

    def _remove(self) -> None:
        name = self.live.pop(self.rng.randrange(len(self.live)))
        w = Write("remove", name, self.host.name, acked=False)
        self._call(stub(self.host).RemoveService, cpb.RemoveServiceRequest(ref=name), w)

    def _update(self) -> None:
        try:
            svc = stub(self.host).GetService(cpb.GetServiceRequest(ref=self.counter), timeout=10).service
        except grpc.RpcError:
            return  # no read, no write
        value = int(svc.spec.labels.get("n", "0")) + 1
        spec = pb.ServiceSpec()
        spec.CopyFrom(svc.spec)
        spec.labels["n"] = str(value)
        w = Write("update", self.counter, self.host.name, acked=False, value=value)
        req = cpb.UpdateServiceRequest(ref=self.counter, version=svc.meta.version, spec=spec)
        self._call(stub(self.host).UpdateService, req, w)


# --------------------------------------------------------------------------
# the campaign


@dataclasses.dataclass
class Fault:
    kind: str
    target: str
    started: float
    held: float = 0.0
    recovered_in: float = 0.0
    note: str = ""


class Campaign:
    def __init__(
        self, bed: tb.Testbed, seed: int, kinds: Sequence[str] = KINDS, recovery_timeout: float = RECOVERY_TIMEOUT
    ) -> None:
        self.bed = bed
        self.kinds = tuple(kinds)
        self.recovery_timeout = recovery_timeout
        self.rng = random.Random(seed)
        self.seed = seed
        self.h = {h.name: h for h in bed.hosts}
        self.base_managers = [self.h["h1"], self.h["h2"], self.h["h3"]]
        self.managers = list(self.base_managers)
        self.workers = [self.h["h4"], self.h["h5"]]
        self.disks: dict[str, powercut.Disk] = {}
        self.faults: list[Fault] = []
        self.incidents: list[str] = []
        self.generation = 0
        self.stop = threading.Event()
        self.writers: list[Writer] = []

    # ---- set-up

    def setup(self) -> None:
        for h in self.base_managers:
            disk = powercut.Disk(Path(self.bed.base) / "disks" / f"{h.name}.img", Path(h.state_dir))
            disk.create()
            self.disks[h.name] = disk
        for h in self.bed.hosts:
            self.bed.start_swarmlet(h)
        h1 = self.h["h1"]
        self.cli(h1, "init", "--advertise-addr", h1.ip)
        mtoken = self.cli(h1, "join-token", "manager", "-q").strip()
        wtoken = self.cli(h1, "join-token", "worker", "-q").strip()
        for h in self.base_managers[1:]:
            self.cli(h, "join", "--token", mtoken, f"{h1.ip}:4242")
        for h in self.workers:
            self.cli(h, "join", "--token", wtoken, f"{h1.ip}:4242")
        if not self.healthy(self.recovery_timeout):
            raise RuntimeError("the cluster did not form")
        self.cli(
            h1,
            "service", "create", "--detach", "--name", "web", "--replicas", str(WEB_REPLICAS),
            "--update-parallelism", "2", "--update-delay", "1s", "--update-monitor", "2s",
            "--update-failure-action", "continue", "--restart-delay", "1s", IMAGE, "sleep", "36000",
        )  # fmt: skip
        self.cli(
            h1,
            "service",
            "create",
            "--detach",
            "--name",
            "glob",
            "--mode",
            "global",
            "--restart-delay",
            "1s",
            IMAGE,
            "sleep",
            "36000",
        )
        for h in self.base_managers:
            self.cli(h1, "service", "create", "--detach", "--name", f"k-{h.name}", "--replicas", "0", "--label", "n=0", IMAGE)

    def cli(self, host: tb.Host, *args: str, tries: int = 5) -> str:
        for attempt in range(tries):
            r = self.bed.cli(host, *args, timeout=180)
            if r.returncode == 0:
                return r.stdout
            if attempt + 1 == tries:
                raise RuntimeError(f"swarmlet {' '.join(args)} on {host.name}: {r.stderr.strip()}")
            time.sleep(2)
        raise AssertionError("unreachable")

    # ---- health

    def leader(self, timeout: float = 30.0) -> tb.Host | None:
        def one() -> tb.Host | None:
            leaders = [m for m in self.managers if (i := info(m)) is not None and i.is_leader]
            return leaders[0] if len(leaders) == 1 else None

        return poll(one, timeout)

    def _nodes_ok(self) -> bool:
        lead = self.leader(timeout=5)
        if lead is None:
            return False
        resp = stub(lead).ListNodes(cpb.ListNodesRequest(), timeout=10)
        names = {n.description.hostname: n for n in resp.nodes}
        if set(names) != {h.name for h in self.bed.hosts}:
            return False
        for n in resp.nodes:
            if n.status.state != pb.NodeStatus.READY:
                return False
            if (
                n.role == pb.NodeSpec.MANAGER
                and n.id != resp.leader_id
                and n.manager_status.reachability != pb.ManagerStatus.REACHABLE
            ):
                return False
        want = {h.name for h in self.managers}
        return {k for k, n in names.items() if n.role == pb.NodeSpec.MANAGER} == want

    def heal(self) -> None:
        """Undo whatever a fault left: partitions, paused or dead daemons, dead
        engines. A daemon that will not start is an incident, not the end."""
        for h in self.bed.hosts:
            self.bed.unpartition(h)
            self.bed.resume_swarmlet(h)
            try:
                if self.bed._dockerd_pid(h) is None:
                    self.bed.start_dockerd(h)
                if not self.bed.swarmlet_running(h):
                    self.bed.start_swarmlet(h)
            except tb.TestbedError as e:
                self.incidents.append(f"{h.name} does not start: {e}")
                log(self.incidents[-1])

    def healthy(self, timeout: float) -> bool:
        """Every node READY and every manager reachable, as the leader sees
        it, and every manager following that leader."""
        return poll(lambda: self._nodes_ok() and self._managers_follow(), timeout, interval=1.0) is not None

    def _managers_follow(self) -> bool:
        lead = self.leader(timeout=5)
        lead_info = info(lead) if lead is not None else None
        if lead_info is None:
            return False
        want = json.loads(lead_info.raft_status or "{}").get("self")
        for m in self.managers:
            i = info(m)
            if i is None or json.loads(i.raft_status or "{}").get("leader") != want:
                return False
        return True

    def writes_again(self, since: float, timeout: float) -> bool:
        """Every writer (one per manager) got a write acknowledged after `since`."""
        if not self.writers:
            return True
        return (
            poll(lambda: all(any(w.acked and w.t > since for w in wr.writes[-50:]) for wr in self.writers), timeout) is not None
        )

    # ---- faults

    def run_faults(self, n: int) -> None:
        schedule: list[str] = []
        while len(schedule) < n:
            block = list(self.kinds)
            self.rng.shuffle(block)
            schedule += block
        for i, kind in enumerate(schedule[:n]):
            f = Fault(kind, "", time.time())
            log(f"fault {i + 1}/{n}: {kind}")
            try:
                getattr(self, "_" + kind.replace("-", "_"))(f)
            except Exception as e:
                f.note = f"injection failed: {type(e).__name__}: {e}"
                log(f.note)
            self.heal()
            t0 = time.monotonic()
            healed = time.time()
            if not self.healthy(self.recovery_timeout) or not self.writes_again(healed, self.recovery_timeout):
                self.incidents.append(f"fault {i + 1} ({kind} {f.target}): no recovery within {self.recovery_timeout:.0f}s")
                log(self.incidents[-1])
            f.recovered_in = time.monotonic() - t0
            self.faults.append(f)

    def _hold(self, f: Fault, low: float, high: float) -> None:
        f.held = self.rng.uniform(low, high)
        time.sleep(f.held)  # the fault lasts this long

    def _leader_or_fail(self) -> tb.Host:
        lead = self.leader()
        if lead is None:
            raise RuntimeError("no leader to inject the fault into")
        return lead

    def _kill_leader(self, f: Fault) -> None:
        lead = self._leader_or_fail()
        f.target = lead.name
        self.bed.kill_swarmlet(lead)
        self._hold(f, 1, 4)
        self.bed.start_swarmlet(lead)

    def _pause_leader(self, f: Fault) -> None:
        lead = self._leader_or_fail()
        f.target = lead.name
        self.bed.pause_swarmlet(lead)
        try:
            self._hold(f, 2, 6)
        finally:
            self.bed.resume_swarmlet(lead)

    def _partition(self, f: Fault, host: tb.Host) -> None:
        f.target = host.name
        self.bed.partition(host)
        try:
            self._hold(f, 3, 8)
        finally:
            self.bed.unpartition(host)

    def _partition_leader(self, f: Fault) -> None:
        self._partition(f, self._leader_or_fail())

    def _partition_worker(self, f: Fault) -> None:
        self._partition(f, self.rng.choice(self._workers_now()))

    def _workers_now(self) -> list[tb.Host]:
        return [w for w in self.workers if w not in self.managers]

    def _powercut(self, f: Fault) -> None:
        victims = list(self.base_managers) if self.rng.random() < 0.3 else [self._leader_or_fail()]
        victims = [v for v in victims if v.name in self.disks]
        f.target = ",".join(v.name for v in victims)
        pids = [(self.bed.swarmlet_pid(v), self.disks[v.name]) for v in victims]
        reports = powercut.power_cut([(pid, disk) for pid, disk in pids if pid is not None])
        f.note = "; ".join(reports)
        for pid, _ in pids:
            if pid is not None:
                self.bed._forget(pid)  # reaped by power_cut: drop the handle
        for v in victims:
            self.bed.start_swarmlet(v)

    def _dockerd_worker(self, f: Fault) -> None:
        w = self.rng.choice(self._workers_now())
        f.target = w.name
        self.bed.kill_dockerd(w)
        self._hold(f, 1, 3)
        self.bed.start_dockerd(w)

    def _agent_in_update(self, f: Fault) -> None:
        w = self.rng.choice(self._workers_now())
        f.target = w.name
        self.generation += 1
        lead = self._leader_or_fail()
        self.cli(lead, "service", "update", "--detach", "--env-add", f"GEN={self.generation}", "web")
        time.sleep(self.rng.uniform(0.5, 2.5))  # into the update
        self.bed.kill_swarmlet(w)
        self._hold(f, 1, 3)
        self.bed.start_swarmlet(w)

    def _restart_managers(self, f: Fault) -> None:
        f.target = ",".join(m.name for m in self.managers)
        for m in self.managers:
            self.bed.kill_swarmlet(m)
        self._hold(f, 0.5, 2)
        for m in self.managers:
            self.bed.start_swarmlet(m)

    def _membership(self, f: Fault) -> None:
        h5 = self.h["h5"]
        f.target = h5.name
        lead = self._leader_or_fail()
        self.cli(lead, "node", "promote", "h5")
        self.managers.append(h5)
        try:
            if not self.healthy(self.recovery_timeout):
                raise RuntimeError("h5 did not become a reachable manager")
            # A fault while the cluster has four managers.
            inner = Fault(self.rng.choice(["kill-leader", "pause-leader"]), "", time.time())
            getattr(self, "_" + inner.kind.replace("-", "_"))(inner)
            f.note = f"with {inner.kind} of {inner.target} while h5 managed"
            self.heal()
            if not self.healthy(self.recovery_timeout):
                raise RuntimeError(f"no recovery from {inner.kind} with four managers")
        finally:
            self.heal()
            demoted = poll(lambda: self._demote(h5), self.recovery_timeout, interval=2.0)
            self.managers.remove(h5)
            if not demoted:
                raise RuntimeError("h5 could not be demoted")
            poll(lambda: (i := info(h5)) is not None and i.role == "worker", self.recovery_timeout)

    def _demote(self, host: tb.Host) -> bool:
        lead = self.leader(timeout=10)
        if lead is None:
            return False
        r = self.bed.cli(lead, "node", "demote", host.name, timeout=120)
        return r.returncode == 0 or "already a worker" in r.stderr

    # ---- the writers

    def start_writers(self, pace: float) -> None:
        self.writers = [Writer(m, self.seed * 10 + i, self.stop, pace) for i, m in enumerate(self.base_managers)]
        for w in self.writers:
            w.start()

    def stop_writers(self) -> None:
        self.stop.set()
        for w in self.writers:
            w.join(120)

    # ---- the checks

    def check(self) -> dict[str, Any]:
        out: dict[str, Any] = {"violations": []}
        bad = out["violations"]
        self.heal()
        if not self.healthy(self.recovery_timeout):
            bad.append("the cluster did not recover at the end")
        digests = poll(lambda: len(d := {i.state_digest for m in self.managers if (i := info(m))}) == 1 and len(d), 180)
        got = {m.name: (i.state_digest[:12] if (i := info(m)) else "down") for m in self.managers}
        out["digests_equal"] = bool(digests) and "down" not in got.values()
        if not out["digests_equal"]:
            bad.append(f"state digests differ: {got}")
        self._check_writes(out)
        self._check_containers(out)
        return out

    def _services_on(self, m: tb.Host) -> list[pb.Service]:
        resp = poll(lambda: stub(m).ListServices(cpb.ListServicesRequest(), timeout=60), 120, interval=1.0)
        if resp is None:
            raise RuntimeError(f"{m.name} does not list services")
        return [s.service for s in resp.services]

    def _check_writes(self, out: dict[str, Any]) -> None:
        bad = out["violations"]
        writes = [w for wr in self.writers for w in wr.writes]
        per_manager = {m.name: [s.spec.name for s in self._services_on(m)] for m in self.base_managers}
        names = per_manager["h1"]
        counts = Counter(names)
        out["writes_acked"] = sum(w.acked for w in writes)
        out["writes_failed"] = sum(not w.acked for w in writes)
        out["failed_maybe_applied"] = sum(not w.acked and w.maybe_applied for w in writes)
        out["failed_found_applied"] = 0
        out["acked_after_unknown_attempt"] = sum(w.acked and w.unknown_attempts > 0 for w in writes)
        out["acked_after_retry"] = sum(w.acked and w.retried > 0 for w in writes)
        reasons = Counter(w.error[:90] for w in writes if not w.acked)
        out["failure_reasons"] = dict(reasons.most_common(8))
        by_op = Counter(w.op for w in writes)
        out["ops"] = dict(by_op)
        doubled = sorted(n for n, c in counts.items() if c > 1)
        if doubled:
            bad.append(f"services twice: {doubled[:10]}")
        for m, ns in per_manager.items():
            if sorted(ns) != sorted(names):
                bad.append(f"{m} lists other services than h1")
        present = set(names)
        history: dict[str, list[Write]] = {}
        for w in sorted(writes, key=lambda w: w.t):
            if w.op in ("create", "remove"):
                history.setdefault(w.name, []).append(w)
        for name, ws in history.items():
            # A writer removes only services whose create it saw acknowledged,
            # once: the history is a create, maybe followed by a remove.
            create, remove = ws[0], (ws[1] if len(ws) > 1 else None)
            story = [(w.op, w.acked, w.error) for w in ws]
            if not create.acked:
                if name in present:
                    out["failed_found_applied"] += 1
                    if not create.maybe_applied:
                        bad.append(f"{name}: create reported failed outright but applied: {story}")
                continue
            if remove is None or (not remove.acked and not remove.maybe_applied):
                if name not in present:
                    what = "acknowledged create lost" if remove is None else "remove reported failed outright but applied"
                    bad.append(f"{name}: {what}: {story}")
            elif remove.acked and name in present:
                bad.append(f"{name}: acknowledged remove did not remove it: {story}")
            elif not remove.acked and name not in present:
                out["failed_found_applied"] += 1  # a remove reported possibly applied, and applied
        services = {s.spec.name: s for s in self._services_on(self.base_managers[0])}
        for wr in self.writers:
            ups = sorted((w for w in wr.writes if w.op == "update"), key=lambda w: w.t)
            final = int(services[wr.counter].spec.labels.get("n", "0"))
            acked = [w.value for w in ups if w.acked]
            last_acked = acked[-1] if acked else 0
            maybe = {w.value for w in ups if not w.acked and w.maybe_applied}
            if final != last_acked and final not in maybe:
                bad.append(f"{wr.counter}: holds {final}, last acknowledged {last_acked}, possibly applied {sorted(maybe)[-5:]}")
            out.setdefault("counters", {})[wr.counter] = {"final": final, "last_acked": last_acked, "updates": len(ups)}

    def _containers(self) -> dict[str, list[dict[str, Any]]]:
        out = {}
        for h in self.bed.hosts:
            client = self.bed.docker(h)
            out[h.name] = client.api.containers(filters={"label": ["swarmlet.task.id"], "status": "running"})
        return out

    def _settled(self) -> tuple[bool, list[str]]:
        problems: list[str] = []
        lead = self.leader(timeout=10)
        if lead is None:
            return False, ["no leader"]
        all_tasks = stub(lead).ListTasks(cpb.ListTasksRequest(), timeout=60).tasks
        wanted = {t.id: t for t in all_tasks if t.desired_state == pb.RUNNING}
        orphaned = [t.id for t in all_tasks if t.status.state == pb.ORPHANED]
        if orphaned:
            problems.append(f"{len(orphaned)} tasks ORPHANED")
        nodes = {n.description.hostname: n.id for n in stub(lead).ListNodes(cpb.ListNodesRequest(), timeout=30).nodes}
        web_slots: Counter[str] = Counter()
        glob_hosts: Counter[str] = Counter()
        for host, cs in self._containers().items():
            for c in cs:
                labels = c.get("Labels") or {}
                tid = labels.get("swarmlet.task.id", "")
                t = wanted.get(tid)
                if t is None or t.node_id != nodes.get(host):
                    problems.append(f"{host}: container {c['Id'][:12]} of task {tid[:12]} the store does not want there")
                sname = labels.get("swarmlet.service.name", "")
                if sname == "web":
                    web_slots[labels.get("swarmlet.slot", "?")] += 1
                elif sname == "glob":
                    glob_hosts[host] += 1
        twice = {s: n for s, n in web_slots.items() if n > 1}
        if twice:
            problems.append(f"web slots running twice: {twice}")
        if sorted(web_slots) != sorted(str(i) for i in range(1, WEB_REPLICAS + 1)):
            problems.append(f"web runs slots {sorted(web_slots)}")
        if sorted(glob_hosts.items()) != sorted((h.name, 1) for h in self.bed.hosts):
            problems.append(f"glob runs {dict(glob_hosts)}")
        return not problems, problems

    def _check_containers(self, out: dict[str, Any]) -> None:
        seen: list[str] = []

        def settled() -> bool:
            ok, problems = self._settled()
            seen[:] = problems
            return ok

        t0 = time.monotonic()
        ok = poll(settled, SETTLE_TIMEOUT, interval=2.0)
        out["settled_in"] = round(time.monotonic() - t0, 1)
        out["containers_ok"] = bool(ok)
        if not ok:
            out["violations"].append(f"not settled within {SETTLE_TIMEOUT:.0f}s: {seen[:8]}")

    # ---- the report

    def report(self, results: dict[str, Any], started: float) -> dict[str, Any]:
        kinds = Counter(f.kind for f in self.faults)
        results.update(
            faults=len(self.faults),
            by_kind=dict(sorted(kinds.items())),
            injection_failures=[f"{f.kind}: {f.note}" for f in self.faults if f.note.startswith("injection failed")],
            incidents=self.incidents,
            recovery_max=round(max((f.recovered_in for f in self.faults), default=0.0), 1),
            recovery_mean=round(sum(f.recovered_in for f in self.faults) / max(1, len(self.faults)), 1),
            minutes=round((time.time() - started) / 60, 1),
            seed=self.seed,
        )
        return results


def table(r: dict[str, Any]) -> str:
    rows = [
        ("faults injected", f"{r['faults']} ({', '.join(f'{k} {v}' for k, v in r['by_kind'].items())})"),
        ("writes acknowledged / failed", f"{r['writes_acked']} / {r['writes_failed']} (ops: {r['ops']})"),
        (
            "acknowledged after a retry (same request id) / after an attempt of unknown outcome",
            f"{r['acked_after_retry']} / {r['acked_after_unknown_attempt']}",
        ),
        ("failed, reported 'may have been applied'", str(r["failed_maybe_applied"])),
        ("failed writes found applied (each reported possibly applied)", str(r["failed_found_applied"])),
        (
            "acknowledged writes lost or doubled",
            str(sum("lost" in v or "twice" in v or "did not remove" in v for v in r["violations"])),
        ),
        ("state digests equal on all managers", "yes" if r["digests_equal"] else "NO"),
        (
            "settled: one container per web slot, one glob per node, no orphan",
            f"{'yes' if r['containers_ok'] else 'NO'} (in {r['settled_in']} s)",
        ),
        ("recovery after a fault: mean / max (s)", f"{r['recovery_mean']} / {r['recovery_max']}"),
        ("recoveries that did not come", str(len(r["incidents"]))),
        ("violations", str(len(r["violations"]))),
        ("duration (min), seed", f"{r['minutes']}, {r['seed']}"),
    ]
    out = ["| check | result |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(out)


def run(
    prefix: str,
    subnet: int,
    faults: int,
    seed: int,
    pace: float,
    keep: bool,
    kinds: Sequence[str] = KINDS,
    recovery_timeout: float = RECOVERY_TIMEOUT,
) -> dict[str, Any]:
    """Bring up the testbed, run the campaign, check, and return the results."""
    reason = tb.missing_prerequisites()
    if reason:
        raise SystemExit(f"chaos: testbed unavailable: {reason}")
    bed = tb.Testbed(prefix=prefix, subnet_index=subnet)
    started = time.time()
    camp: Campaign | None = None
    try:
        bed.up(5, swarmlet=False)
        camp = Campaign(bed, seed, kinds, recovery_timeout)
        log("setting up: 3 managers on loop disks, 2 workers, web x6, glob")
        camp.setup()
        camp.start_writers(pace)
        time.sleep(5)  # some writes before the first fault
        camp.run_faults(faults)
        camp.stop_writers()
        log("checking")
        results = camp.check()
        return camp.report(results, started)
    finally:
        if camp is not None:
            camp.stop.set()
        if not keep:
            bed.down()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--faults", type=int, default=120)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--prefix", default=os.environ.get("SWARMLET_TESTBED_PREFIX", "ch"))
    p.add_argument("--subnet", type=int, default=int(os.environ.get("SWARMLET_TESTBED_SUBNET", "40")))
    p.add_argument("--pace", type=float, default=1.0, help="mean seconds between a writer's writes")
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated fault kinds to inject (default: all)")
    p.add_argument("--report", default="", help="write the results as JSON here")
    p.add_argument("--keep", action="store_true", help="leave the testbed up (remove it with testbed.py down)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        p.error(f"unknown fault kinds {unknown}; known: {', '.join(KINDS)}")
    r = run(args.prefix, args.subnet, args.faults, args.seed, args.pace, args.keep, kinds)
    print(table(r))
    for v in r["violations"]:
        print(f"VIOLATION: {v}")
    for i in r["incidents"]:
        print(f"INCIDENT: {i}")
    for reason, n in r.get("failure_reasons", {}).items():
        print(f"failed writes ({n}): {reason}")
    if args.report:
        Path(args.report).write_text(json.dumps(r, indent=2) + "\n")
    return 1 if r["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
