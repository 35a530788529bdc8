"""A tiny simulated cluster for the pure core's tests: every change, including
the agents' status reports, goes through state.apply_batch, so tests see the
real store semantics (versions, merges, monotonic states)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import orchestrator, planner, tasks
from swarmlet.core import state as st

GiB = 1 << 30
CPU = 1_000_000_000


class Sim:
    def __init__(self, now: float = 1000.0, history_limit: int = 0) -> None:
        self.snap = st.Snapshot()
        self.now = now
        self._ids = 0
        c = pb.Cluster(id="cluster")
        c.spec.task_history_limit = history_limit
        self.apply([st.put(c, create=True)])

    # ---- plumbing ----

    def new_id(self) -> str:
        self._ids += 1
        return f"task{self._ids:06d}"

    def apply(self, actions: Iterable[spb.StoreAction]) -> None:
        res = st.apply_batch(self.snap, spb.StoreBatch(actions=list(actions), timestamp=self.now))
        assert res.ok, res.error

    def round(self, check_idempotent: bool = True) -> list[spb.StoreAction]:
        """One leader round, applied; then the orchestrator must find nothing
        more to do at the same instant."""
        acts = planner.plan_round(self.snap, self.now, self.new_id, strict=True)
        self.apply(acts)
        if check_idempotent:
            again = orchestrator.orchestrate(self.snap, self.now, self.new_id).actions
            assert again == [], f"orchestrator not idempotent: {again}"
        return acts

    def converge(self, max_rounds: int = 10) -> int:
        for i in range(max_rounds):
            if not self.round():
                return i
        raise AssertionError("no fixed point")

    # ---- objects ----

    def add_node(
        self,
        nid: str,
        *,
        cpus: float = 0,
        mem: int = 0,
        labels: dict | None = None,
        role: int = pb.NodeSpec.WORKER,
        state: int = pb.NodeStatus.READY,
        availability: int = pb.NodeSpec.ACTIVE,
        hostname: str = "",
        os: str = "linux",
        arch: str = "x86_64",
    ) -> pb.Node:
        n = pb.Node(id=nid, role=role)
        n.spec.availability = availability
        n.spec.labels.update(labels or {})
        n.description.hostname = hostname or f"host-{nid}"
        n.description.os = os
        n.description.arch = arch
        n.description.resources.nano_cpus = int(cpus * CPU)
        n.description.resources.memory_bytes = mem
        n.status.state = state
        self.apply([st.put(n, create=True)])
        return self.snap.nodes[nid]

    def set_node(
        self, nid: str, *, state: int | None = None, availability: int | None = None, labels: dict | None = None
    ) -> None:
        n = pb.Node()
        n.CopyFrom(self.snap.nodes[nid])
        if state is not None:
            n.status.state = state
        if availability is not None:
            n.spec.availability = availability
        if labels is not None:
            n.spec.labels.clear()
            n.spec.labels.update(labels)
        self.apply([st.put(n)])

    def remove_node(self, nid: str) -> None:
        self.apply([st.delete(spb.KIND_NODE, nid)])

    def add_service(
        self,
        sid: str,
        *,
        replicas: int | None = 1,
        global_: bool = False,
        condition: int = pb.RestartPolicy.ANY,
        delay: float = 0.0,
        max_attempts: int = 0,
        window: float = 0.0,
        constraints: list[str] | None = None,
        cpus: float = 0,
        mem: int = 0,
        image: str = "busybox:latest",
    ) -> pb.Service:
        s = pb.Service(id=sid, spec_version=1)
        s.spec.name = f"svc-{sid}"
        if global_:
            getattr(s.spec, "global").SetInParent()
        else:
            s.spec.replicated.replicas = replicas or 0
        t = s.spec.task
        t.container.image = image
        t.restart.condition = condition
        t.restart.delay = delay
        t.restart.max_attempts = max_attempts
        t.restart.window = window
        t.placement.constraints.extend(constraints or [])
        t.resources.reservations.nano_cpus = int(cpus * CPU)
        t.resources.reservations.memory_bytes = mem
        self.apply([st.put(s, create=True)])
        return self.snap.services[sid]

    def update_service(
        self, sid: str, *, replicas: int | None = None, constraints: list[str] | None = None, bump: bool = False
    ) -> None:
        s = pb.Service()
        s.CopyFrom(self.snap.services[sid])
        if replicas is not None:
            s.spec.replicated.replicas = replicas
        if constraints is not None:
            del s.spec.task.placement.constraints[:]
            s.spec.task.placement.constraints.extend(constraints)
            bump = True
        if bump:
            s.spec_version += 1
        self.apply([st.put(s)])

    def remove_service(self, sid: str) -> None:
        self.apply([st.delete(spb.KIND_SERVICE, sid)])

    # ---- agents ----

    def report(self, task_id: str, state: int, *, err: str = "", exit_code: int = 0, message: str = "") -> None:
        t = self.snap.tasks[task_id]
        status = pb.TaskStatus(
            timestamp=self.now, state=state, err=err, exit_code=exit_code, message=message or pb.TaskState.Name(state).lower()
        )
        self.apply([st.set_status(task_id, status, node_id=t.node_id)])

    def run_assigned(self) -> int:
        """Agents start every live assigned task, and stop every task whose
        desired state asks for it (what real agents converge to)."""
        acts = []
        for t in self.snap.tasks.values():
            if not t.node_id or self.snap.nodes.get(t.node_id) is None:
                continue
            if self.snap.nodes[t.node_id].status.state != pb.NodeStatus.READY:
                continue
            s = t.status.state
            # Desired READY (a stop-first update's new task) is placed, not started.
            if t.desired_state == pb.RUNNING and pb.ASSIGNED <= s < pb.RUNNING:
                acts.append(
                    st.set_status(t.id, pb.TaskStatus(timestamp=self.now, state=pb.RUNNING, message="started"), t.node_id)
                )
            elif t.desired_state > pb.RUNNING and pb.ASSIGNED <= s < pb.COMPLETE:
                acts.append(
                    st.set_status(t.id, pb.TaskStatus(timestamp=self.now, state=pb.SHUTDOWN, message="stopped"), t.node_id)
                )
        if acts:
            self.apply(acts)
        return len(acts)

    def settle(self, max_rounds: int = 20) -> None:
        """Rounds and agent reactions until nothing changes."""
        for _ in range(max_rounds):
            acts = self.round()
            ran = self.run_assigned()
            if not acts and not ran:
                return
        raise AssertionError("cluster did not settle")

    # ---- queries ----

    def tasks(self, sid: str | None = None, *, live: bool | None = None) -> list[pb.Task]:
        out = [t for t in self.snap.tasks.values() if sid is None or t.service_id == sid]
        if live is not None:
            out = [t for t in out if tasks.wanted(t) == live]
        return sorted(out, key=lambda t: (t.slot, t.meta.created_at, t.id))

    def live_by_slot(self, sid: str) -> dict[int, pb.Task]:
        out: dict[int, pb.Task] = {}
        for t in self.tasks(sid, live=True):
            assert t.slot not in out, f"two live tasks in slot {t.slot}"
            out[t.slot] = t
        return out

    def per_node(self, sid: str | None = None) -> Counter:
        return Counter(t.node_id for t in self.tasks(sid, live=True) if t.node_id)


def kinds(actions: list[spb.StoreAction]) -> Counter:
    """How many actions of each kind, e.g. {'put': 3, 'task_desired': 1}."""
    return Counter(a.WhichOneof("action") for a in actions)
