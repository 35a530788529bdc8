"""Following a service's progress: after `service create` / `scale` until it
converges, and after `service update` / `rollback` / `promote` until the
update ends.

The manager judges (Control.ServiceProgress, from core/views.py): which task
stands for each slot, whether a slot is settled or stuck, whether the service
converged, where its update stands. This module only renders that answer and
decides how long to wait: a stuck slot is reported as a failure once it has
stayed stuck for GRACE seconds, so a condition the next scheduling round
clears does not end the command.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.client import DaemonClient
from swarmlet.cli.output import format_bytes, service_mode, task_state_name, trunc_id

Phase = cpb.ServiceProgressResponse.UpdatePhase

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


@dataclass(frozen=True)
class SlotLine:
    label: str
    state: str  # "running", "pending", "failed", "" (no task yet)
    err: str = ""
    fraction: float = 0.0
    detail: str = ""  # e.g. the image fetch of a preparing task (issue 9)


@dataclass(frozen=True)
class Verdict:
    converged: bool
    failure: str | None
    running: int
    desired: int
    lines: tuple[SlotLine, ...]
    since: dict[str, float] = field(default_factory=dict)  # feed back into the next call
    job: bool = False  # a job: progress counts completions
    completed: int = 0

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


def _node_label(sp: cpb.SlotProgress) -> str:
    return sp.node_name or trunc_id(sp.node_id)


def slot_label(p: cpb.ServiceProgressResponse, sp: cpb.SlotProgress) -> str:
    """ "2/3" for a replicated slot, the node's name for a global service."""
    return f"{sp.slot}/{p.desired}" if sp.slot else _node_label(sp)


def task_label(p: cpb.ServiceProgressResponse, sp: cpb.SlotProgress) -> str:
    """ "web.2", or "web.<node>" for a global service, as in `service ps`."""
    return f"{p.service.spec.name}.{sp.slot if sp.slot else _node_label(sp)}"


def _ordered(p: cpb.ServiceProgressResponse) -> list[cpb.SlotProgress]:
    # Slots in order; a global service's nodes by the name shown.
    return sorted(p.slots, key=lambda sp: (sp.slot, "" if sp.slot else _node_label(sp), sp.node_id))


def _slot_line(p: cpb.ServiceProgressResponse, sp: cpb.SlotProgress) -> SlotLine:
    label = slot_label(p, sp)
    if not sp.has_task:
        return SlotLine(label, "")
    state = task_state_name(sp.state)
    if sp.live:
        return SlotLine(label, state, sp.err, _fraction(sp.state), pull_text(sp.pull) if sp.HasField("pull") else "")
    if sp.settled:
        return SlotLine(label, state, "", 1.0)
    return SlotLine(label, state, sp.err or sp.message)


def evaluate(p: cpb.ServiceProgressResponse, now: float, since: Mapping[str, float], grace: float = GRACE) -> Verdict:
    """Converged or failed, from the manager's answer. `now` is any monotonic
    clock; `since` holds when each stuck condition was first seen (from the
    previous Verdict), so a condition must persist for `grace` seconds before
    it is a failure. A new task in a stuck slot starts its own count."""
    new_since: dict[str, float] = {}
    failure: str | None = None
    ordered = _ordered(p)
    for sp in ordered:
        if sp.stuck:
            held = _timer(f"slot:{sp.slot}:{sp.node_id}:{sp.task_id}", now, since, new_since)
            if held >= grace and failure is None:
                failure = f"{task_label(p, sp)}: {sp.stuck}"
    if not p.slots and p.stuck:
        # Nowhere to run at all (a global service no node may run).
        held = _timer("service", now, since, new_since)
        if held >= grace and failure is None:
            failure = f"{service_mode(p.service)} service {p.service.spec.name} has no tasks: {p.stuck}"
    return Verdict(
        converged=failure is None and p.converged,
        failure=failure,
        running=p.running,
        desired=p.desired,
        lines=tuple(_slot_line(p, sp) for sp in ordered),
        since=new_since,
        job=p.service.spec.WhichOneof("mode") in ("replicated_job", "global_job"),
        completed=p.completed,
    )


# ---- drawing -------------------------------------------------------------------------


def bar(fraction: float) -> str:
    filled = max(0, min(BAR_WIDTH, round(fraction * BAR_WIDTH)))
    return "[" + "=" * filled + ">" + " " * (BAR_WIDTH - filled) + "]"


def render(v: Verdict) -> list[str]:
    """Lines of one frame: the overall count, then one line per slot / node."""
    if v.job:
        out = [f"job progress: {v.completed} out of {v.desired} tasks completed ({v.running} running)"]
    else:
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
            out.append(f"{head} {ln.state.ljust(9)} {bar(ln.fraction)}" + (f" {ln.detail}" if ln.detail else ""))
    return out


def pull_text(p: pb.ImagePullProgress) -> str:
    """ "pulling from registry 45% (90.0MiB/200.0MiB)": a task's image fetch."""
    verb = "pulling from registry" if p.source == "registry" else f"fetching from {p.source}"
    if p.total:
        total = max(p.total, p.current)  # a saved archive is a little larger than the image
        pct = min(100, int(100 * p.current / total))
        return f"{verb} {pct}% ({format_bytes(p.current)}/{format_bytes(total)})"
    return f"{verb} {format_bytes(p.current)}" if p.current else verb


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


def _progress(client: DaemonClient, service_id: str) -> cpb.ServiceProgressResponse:
    p: cpb.ServiceProgressResponse = client.call(client.stub.ServiceProgress, cpb.ServiceProgressRequest(ref=service_id))
    return p


def watch(
    client: DaemonClient,
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
            p = _progress(client, service_id)
            now = time.monotonic()
            v = evaluate(p, now, since, grace)
            since = v.since
            if not quiet:
                renderer.frame(render(v))
            if v.failure:
                err.write(f"Error: {v.failure}\n")
                err.flush()
                return 1
            if v.converged:
                if not quiet:
                    renderer.text("job complete" if v.job else "verify: Service converged")
                return 0
            if timeout is not None and now - start >= timeout:
                err.write(
                    f"Error: service {p.service.spec.name} did not converge within {timeout:g}s "
                    f"({v.running} out of {v.desired} tasks running)\n"
                )
                err.flush()
                return 1
            time.sleep(POLL_INTERVAL)
    except KeyboardInterrupt:
        err.write("\nOperation continuing in background.\n")
        err.flush()
        return 0


# ---- rolling updates -------------------------------------------------------------------


@dataclass(frozen=True)
class UpdateVerdict:
    done: bool
    exit_code: int
    lines: tuple[str, ...]
    final: str = ""


def _update_slot(p: cpb.ServiceProgressResponse, sp: cpb.SlotProgress) -> str:
    label = slot_label(p, sp)
    # Only a wanted task of the new spec shows; until there is one the slot waits.
    if not (sp.has_task and sp.current and sp.desired_state <= pb.RUNNING):
        return f"{label}: waiting"
    state = task_state_name(sp.state)
    if sp.desired_state == pb.READY:
        state = "ready (waiting for the old task to stop)"
    if sp.HasField("pull") and not sp.err:
        state += f" {pull_text(sp.pull)}"
    return f"{label}: {state}" + (f": {sp.err}" if sp.err else "")


def evaluate_update(p: cpb.ServiceProgressResponse, started_at: float, rollback_cmd: bool = False) -> UpdateVerdict:
    """Where the update started at `started_at` stands, one line per slot, and
    whether to stop watching (with the exit code and why). `rollback_cmd`: the
    user asked for the rollback, so its completion is a success."""
    s = p.service.update_status
    state = pb.UpdateStatus.State.Name(s.state).lower()
    lines = (
        f"overall progress: {p.running} out of {p.desired} tasks",
        *(_update_slot(p, sp) for sp in _ordered(p)),
        f"update status: {state}" + (f": {s.message}" if s.message else ""),
    )
    if s.started_at + 1e-6 < started_at:
        return UpdateVerdict(False, 0, lines)  # a lagging manager: our update is not visible yet
    phase = p.update_phase
    if phase == Phase.COMPLETED:
        return UpdateVerdict(True, 0, lines, "verify: Service converged (update completed)")
    if phase == Phase.ROLLED_BACK:
        if rollback_cmd:
            return UpdateVerdict(True, 0, lines, "rollback: Service converged (rollback completed)")
        return UpdateVerdict(True, 1, lines, f"Error: {s.message or 'update rolled back'}")
    if phase == Phase.PAUSED:
        return UpdateVerdict(True, 1, lines, f"Error: {s.message or state}")
    if phase == Phase.AWAITING_PROMOTION:
        return UpdateVerdict(True, 0, lines, f"canaries ready: {s.message}")
    return UpdateVerdict(False, 0, lines)


def watch_update(
    client: DaemonClient,
    service_id: str,
    started_at: float,
    *,
    quiet: bool = False,
    rollback_cmd: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
    timeout: float | None = None,
) -> int:
    """Poll until the update completes (0), pauses or rolls back (1)."""
    out = out or sys.stdout
    err = err or sys.stderr
    renderer = Renderer(out, tty=out.isatty())
    start = time.monotonic()
    try:
        while True:
            p = _progress(client, service_id)
            v = evaluate_update(p, started_at, rollback_cmd)
            if not quiet:
                renderer.frame(list(v.lines))
            if v.done:
                (err if v.exit_code else out).write(v.final + "\n")
                (err if v.exit_code else out).flush()
                return v.exit_code
            if timeout is not None and time.monotonic() - start > timeout:
                err.write(f"Error: the update of {p.service.spec.name} did not finish within {timeout:g}s\n")
                return 1
            time.sleep(POLL_INTERVAL)
    except KeyboardInterrupt:
        err.write("\nOperation continuing in background.\n")
        return 0
