"""Progress of a service converging after `service create` / `service scale`.

evaluate() is the decision, pure over (service, tasks, now, first-seen times), so the
rules below are unit-tested without a daemon; watch() is the polling/drawing shell.

Rules:
- converged: every replicated slot 1..N has a live task running the service's current
  spec, desired RUNNING and observed RUNNING (global: one per node that has tasks);
  a slot whose last task COMPLETEd under a policy that does not restart successes
  counts as settled.
- failed when, for GRACE seconds, (a) a live task stays PENDING with an error (no
  suitable node ...), or (b) a slot has no live task and its last task is terminal
  (the restart policy gave up; the grace is extended by the restart delay so a
  replacement that is merely delayed is not mistaken for giving up), or a global
  service has no task at all (no eligible node).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.client import Daemon
from swarmlet.cli.output import task_state_name, trunc_id

GRACE = 3.0
POLL_INTERVAL = 0.2
BAR_WIDTH = 50

# States a task passes through on its way to RUNNING, for the progress bar.
_STAGES = [
    pb.NEW,
    pb.PENDING,
    pb.ASSIGNED,
    pb.ACCEPTED,
    pb.PREPARING,
    pb.READY,
    pb.STARTING,
    pb.RUNNING,
]


def is_terminal(task: pb.Task) -> bool:
    return task.status.state >= pb.COMPLETE


def is_live(task: pb.Task) -> bool:
    """Not finished and still wanted (desired READY counts: a delayed restart)."""
    return not is_terminal(task) and task.desired_state <= pb.RUNNING


def is_current(task: pb.Task, service: pb.Service) -> bool:
    """Runs the service's current spec. Equal specs count too: scaling bumps the
    service's spec_version without replacing the tasks that already run it."""
    return task.spec_version == service.spec_version or task.spec == service.spec.task


def _newest(tasks: Sequence[pb.Task]) -> pb.Task:
    return max(tasks, key=lambda t: (t.meta.created_at, t.meta.version, t.status.timestamp, t.id))


@dataclass(frozen=True)
class SlotLine:
    label: str
    state: str  # "running", "pending", "failed", "" (no task yet)
    err: str = ""
    fraction: float = 0.0


@dataclass(frozen=True)
class Verdict:
    converged: bool
    failure: str | None
    running: int
    desired: int
    lines: tuple[SlotLine, ...]
    since: dict[str, float] = field(default_factory=dict)  # feed back into the next call
    note: str | None = None

    @property
    def done(self) -> bool:
        return self.converged or self.failure is not None


def _fraction(state: int) -> float:
    for i, s in enumerate(_STAGES):
        if state <= s:
            return i / (len(_STAGES) - 1)
    return 1.0


def _timer(key: str, now: float, since: Mapping[str, float], out: dict[str, float]) -> float:
    """Seconds a condition has held; records when it was first seen."""
    first = since.get(key, now)
    out[key] = first
    return now - first


def _task_label(service: pb.Service, task: pb.Task, node_names: Mapping[str, str]) -> str:
    if task.slot:
        return f"{service.spec.name}.{task.slot}"
    return f"{service.spec.name}.{node_names.get(task.node_id) or trunc_id(task.node_id)}"


def _describe_end(task: pb.Task) -> str:
    state = task_state_name(task.status.state)
    why = task.status.err or task.status.message
    if not why and task.status.state == pb.FAILED:
        why = f"exit code {task.status.exit_code}"
    return f"task {state}: {why}" if why else f"task {state}"


def _settled_success(task: pb.Task, service: pb.Service) -> bool:
    """A task that COMPLETEd (exit 0) and that the restart policy will not replace."""
    return task.status.state == pb.COMPLETE and service.spec.task.restart.condition != pb.RestartPolicy.ANY


def evaluate(
    service: pb.Service,
    tasks: Sequence[pb.Task],
    now: float,
    since: Mapping[str, float],
    node_names: Mapping[str, str] | None = None,
    grace: float = GRACE,
) -> Verdict:
    """Decide whether the service has converged or failed. `now` is any monotonic
    clock; `since` holds when each pending condition was first seen (from the previous
    Verdict) so a condition must persist for `grace` seconds before it is a failure."""
    names = node_names or {}
    tasks = [t for t in tasks if t.service_id == service.id or not t.service_id]
    new_since: dict[str, float] = {}
    failure: str | None = None
    restart = service.spec.task.restart
    empty_grace = grace + (restart.delay if restart.condition != pb.RestartPolicy.NONE else 0.0)

    def check_pending(t: pb.Task) -> None:
        nonlocal failure
        if t.status.state <= pb.PENDING and t.status.err:
            held = _timer(f"pending:{t.id}", now, since, new_since)
            if held >= grace and failure is None:
                failure = f"{_task_label(service, t, names)}: {t.status.err}"

    groups: dict[str, list[pb.Task]] = {}
    labels: dict[str, str] = {}
    is_global = service.spec.WhichOneof("mode") == "global"
    if is_global:
        for t in tasks:
            if t.slot or not t.node_id:
                continue
            groups.setdefault(t.node_id, []).append(t)
        # Nodes whose newest task the orchestrator itself shut down (drain, node
        # removed, constraint no longer met) are not expected to run one.
        groups = {nid: ts for nid, ts in groups.items() if any(is_live(t) for t in ts) or _newest(ts).desired_state <= pb.RUNNING}
        for nid in groups:
            labels[nid] = names.get(nid) or trunc_id(nid)
        order = sorted(groups, key=lambda nid: (labels[nid], nid))
        desired = len(order)
    else:
        desired = service.spec.replicated.replicas
        order = [str(s) for s in range(1, desired + 1)]
        for s in order:
            groups[s] = []
            labels[s] = f"{s}/{desired}"
        for t in tasks:
            key = str(t.slot)
            if key in groups:
                groups[key].append(t)

    lines: list[SlotLine] = []
    running = 0
    settled = 0
    for key in order:
        ts = groups[key]
        live = [t for t in ts if is_live(t)]
        for t in live:
            check_pending(t)
        if live:
            fresh = [t for t in live if is_current(t, service)]
            cur = _newest(fresh or live)
            ok = is_current(cur, service) and cur.desired_state == pb.RUNNING and cur.status.state == pb.RUNNING
            running += ok
            settled += ok
            state = task_state_name(cur.status.state)
            lines.append(SlotLine(labels[key], state, cur.status.err, _fraction(cur.status.state)))
            continue
        if not ts:
            lines.append(SlotLine(labels[key], ""))
            continue
        last = _newest(ts)
        state = task_state_name(last.status.state)
        if _settled_success(last, service):
            settled += 1
            lines.append(SlotLine(labels[key], state, "", 1.0))
            continue
        lines.append(SlotLine(labels[key], state, last.status.err or last.status.message))
        if is_terminal(last):
            held = _timer(f"empty:{key}", now, since, new_since)
            if held >= empty_grace and failure is None:
                failure = (
                    f"{_task_label(service, last, names)}: {_describe_end(last)} "
                    "(no replacement task was started: the restart policy gave up)"
                )

    note = None
    if is_global and not order:
        held = _timer("global-empty", now, since, new_since)
        note = "no tasks yet"
        if held >= grace and failure is None:
            failure = (
                f"global service {service.spec.name} has no tasks: no node is eligible "
                "(check --constraint, node availability and that nodes are Ready)"
            )
    converged = failure is None and settled == desired and (desired > 0 or not is_global)
    return Verdict(
        converged=converged,
        failure=failure,
        running=running,
        desired=desired,
        lines=tuple(lines),
        since=new_since,
        note=note,
    )


# ---- drawing -------------------------------------------------------------------------


def bar(fraction: float) -> str:
    filled = max(0, min(BAR_WIDTH, round(fraction * BAR_WIDTH)))
    return "[" + "=" * filled + ">" + " " * (BAR_WIDTH - filled) + "]"


def render(v: Verdict) -> list[str]:
    """Lines of one frame: the overall count, then one line per slot / node."""
    out = [f"overall progress: {v.running} out of {v.desired} tasks"]
    width = max((len(ln.label) for ln in v.lines), default=0)
    for ln in v.lines:
        head = f"{ln.label}:".ljust(width + 1)
        if not ln.state:
            out.append(head)
        elif ln.err:
            out.append(f"{head} {ln.state}: {ln.err}")
        elif ln.state in ("failed", "rejected", "shutdown", "orphaned", "remove"):
            out.append(f"{head} {ln.state}")
        else:
            out.append(f"{head} {ln.state.ljust(9)} {bar(ln.fraction)}")
    return out


class Renderer:
    """Redraws in place on a terminal; elsewhere prints each changed line once so logs
    and pipes get a readable history instead of escape codes."""

    def __init__(self, out: TextIO, tty: bool) -> None:
        self.out = out
        self.tty = tty
        self._drawn = 0
        self._seen: dict[str, str] = {}

    def frame(self, lines: list[str]) -> None:
        if self.tty:
            buf = []
            if self._drawn:
                buf.append(f"\x1b[{self._drawn}A")
            for line in lines:
                buf.append("\x1b[2K" + line + "\n")
            for _ in range(self._drawn - len(lines)):
                buf.append("\x1b[2K\n")
            self._drawn = max(self._drawn, len(lines))
            self.out.write("".join(buf))
        else:
            for line in lines:
                if line.rstrip().endswith(":"):
                    continue  # a slot with no task yet: nothing worth a log line
                key = line.split(":", 1)[0]
                if self._seen.get(key) != line:
                    self._seen[key] = line
                    self.out.write(line + "\n")
        self.out.flush()

    def text(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


def watch(
    daemon: Daemon,
    service_id: str,
    *,
    quiet: bool = False,
    timeout: float | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    grace: float | None = None,
) -> int:
    """Poll until the service converges (0) or fails (1). Ctrl-C leaves it running."""
    grace = GRACE if grace is None else grace
    out = out or sys.stdout
    err = err or sys.stderr
    renderer = Renderer(out, tty=out.isatty())
    since: dict[str, float] = {}
    start = time.monotonic()
    try:
        while True:
            svc = daemon.call(daemon.stub.GetService, cpb.GetServiceRequest(ref=service_id)).service
            resp = daemon.call(daemon.stub.ListTasks, cpb.ListTasksRequest(service_ref=svc.id))
            now = time.monotonic()
            v = evaluate(svc, resp.tasks, now, since, dict(resp.node_names), grace)
            since = v.since
            if not quiet:
                renderer.frame(render(v))
            if v.failure:
                err.write(f"Error: {v.failure}\n")
                err.flush()
                return 1
            if v.converged:
                if not quiet:
                    renderer.text("verify: Service converged")
                return 0
            if timeout is not None and now - start >= timeout:
                err.write(
                    f"Error: service {svc.spec.name} did not converge within {timeout:g}s "
                    f"({v.running} out of {v.desired} tasks running)\n"
                )
                err.flush()
                return 1
            time.sleep(POLL_INTERVAL)
    except KeyboardInterrupt:
        err.write("\nOperation continuing in background.\n")
        err.flush()
        return 0
