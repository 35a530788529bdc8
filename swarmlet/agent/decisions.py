"""What the executor does with one task: pure decisions, no engine calls.

`decide` looks at a task (its desired state), what this agent knows of its
state, and the container as the engine shows it now, and names one action;
the executor carries it out and looks again when anything changes
(level-triggered, as swarmkit's exec.Do does with a controller). The statuses
the agent reports, with their messages, are all written here.
"""

from __future__ import annotations

from dataclasses import dataclass

from swarmlet.agent.runtime import containers as cm
from swarmlet.agent.runtime.interface import Container, Health, Listed, State
from swarmlet.api import objects_pb2 as pb


def terminal(state: int) -> bool:
    """Nothing follows these states: a task runs once; the orchestrator makes
    a new task to run again."""
    return state >= pb.COMPLETE


@dataclass(frozen=True)
class Status:
    """A task status to report (states only increase: see Executor._report)."""

    state: int  # pb.TaskState
    message: str
    err: str = ""
    exit_code: int = 0


# ---- the actions ----


@dataclass(frozen=True)
class Idle:
    """Nothing to do until something changes."""

    why: str


@dataclass(frozen=True)
class Remove:
    """Out of the networks, the container (if any) removed, then `status`."""

    status: Status | None = None


@dataclass(frozen=True)
class Stop:
    """Stop the running container, then report `status`. `release`: leave the
    networks first (a shutdown: out of DNS and VIP backends before the stop's
    grace period, as the store already dropped it)."""

    status: Status
    release: bool


@dataclass(frozen=True)
class Create:
    """Create the task's container and start it (see `after_start`)."""


@dataclass(frozen=True)
class Start:
    """Start the container created earlier (the agent stopped in between)."""

    health: bool  # a health check gates RUNNING


@dataclass(frozen=True)
class Report:
    """Report `status`; `wire`: wire the running container into its networks
    first, so it is reachable once reported; `release`: leave them first."""

    status: Status
    wire: bool = False
    release: bool = False


Action = Idle | Remove | Stop | Create | Start | Report

# ---- statuses ----

REMOVED = Status(pb.SHUTDOWN, "removed")
STOPPED = Status(pb.SHUTDOWN, "stopped")
UNHEALTHY = Status(pb.FAILED, "unhealthy", err="container unhealthy")
STARTING = Status(pb.STARTING, "starting: waiting for the health check")


def decide(task: pb.Task, assigned: bool, known: int, container_id: str, observed: Container | None) -> Action:
    """The next action for `task`. `assigned`: in the node's current set;
    `known`: the highest state reported by this agent or seen in the store;
    `container_id`: the task's container as far as the agent knows ("" if
    none yet); `observed`: that container now (None: none, or gone)."""
    if not assigned:
        # Dropped from the set (the task was deleted, or it is an orphan of
        # a previous run): its container goes, logs with it.
        return Remove()
    desired = task.desired_state
    if desired >= pb.REMOVE:
        return Remove(REMOVED)
    if desired >= pb.SHUTDOWN:
        if observed is not None and observed.state is State.RUNNING:
            return Stop(STOPPED, release=True)
        return Report(STOPPED, release=True)
    if desired < pb.RUNNING:
        return Idle("not to be started yet")
    if terminal(known):
        return Idle("ended: the orchestrator makes a new task")
    if observed is None:
        if container_id or known >= pb.STARTING:
            # It was started once, and someone removed its container.
            return Report(Status(pb.FAILED, "container removed", err=f"container {container_id or '(unknown)'} was removed"))
        return Create()
    if observed.state is State.REMOVING:
        return Idle("being removed: the destroy event follows")
    if observed.state is State.CREATED:
        return Start(health=observed.has_healthcheck)
    if observed.state is State.RUNNING:
        if observed.health is Health.NONE:
            return Report(Status(pb.RUNNING, "started"), wire=True)
        if observed.health is Health.HEALTHY:
            return Report(Status(pb.RUNNING, "healthy"), wire=True)
        if observed.health is Health.UNHEALTHY:
            return Stop(UNHEALTHY, release=False)
        return Report(STARTING, wire=True)
    return Report(exit_status(observed.exit_code, observed.oom_killed, observed.error), release=True)


def exit_status(exit_code: int, oom_killed: bool = False, error: str = "") -> Status:
    """The status of a container that ended on its own (not stopped by us)."""
    if exit_code == 0 and not oom_killed:
        return Status(pb.COMPLETE, "finished")
    err = f"task: non-zero exit ({exit_code})"
    if oom_killed:
        err += ": killed by the kernel OOM killer (out of memory)"
    elif error:
        err += f": {error}"
    return Status(pb.FAILED, "exited", err=err, exit_code=exit_code)


def after_start(health: bool) -> Status:
    """Once started: RUNNING, unless a health check must pass first. Should
    the container already have died, its die event makes the next look
    report its end (RUNNING first is still true: it ran)."""
    if health:
        return Status(pb.STARTING, "started: waiting for the health check")
    return Status(pb.RUNNING, "started")


# ---- images (issue 9) ----


@dataclass(frozen=True)
class UseImage:
    """Run the local image `image` (an id)."""

    image: str


@dataclass(frozen=True)
class FetchImage:
    """Report PREPARING, bring the image in (a peer, then the registry), then create."""


@dataclass(frozen=True)
class RejectImage:
    status: Status


ImageStep = UseImage | FetchImage | RejectImage

PREPARING = Status(pb.PREPARING, "preparing: fetching the image")


def image_step(policy: int, local_id: str, image: str, hostname: str) -> ImageStep:
    """What to do about a task's image before its container is created, given
    the pull policy and the id of the matching local image ("" if none)."""
    if policy == pb.PULL_ALWAYS:
        return FetchImage()
    if local_id:
        return UseImage(local_id)
    if policy == pb.PULL_NEVER:
        return RejectImage(image_missing(image, hostname, "the pull policy is never"))
    return FetchImage()


def image_missing(image: str, hostname: str, why: str = "") -> Status:
    err = f'image "{image}" not found on node {hostname}' + (f": {why}" if why else "")
    return Status(pb.REJECTED, "rejected", err=err)


def fetch_failed(explanation: str) -> Status:
    """The image could not be fetched: the task is rejected on this node with
    the registry's (or the peers') own words; the orchestrator retries it
    elsewhere after the restart delay."""
    return Status(pb.REJECTED, "image fetch failed", err=explanation)


def create_refused(explanation: str) -> Status:
    return Status(pb.REJECTED, "create failed", err=explanation)


def start_refused(explanation: str) -> Status:
    return Status(pb.FAILED, "start failed", err=explanation)


def by_task(listed: list[Listed], node_id: str) -> tuple[dict[str, str], list[str]]:
    """A listing of this node's containers as (task id -> container id, and
    strays: containers labelled for this node but with no task). Should a
    task have two containers, the running one is it."""
    found: dict[str, Listed] = {}
    strays: list[str] = []
    for c in listed:
        if c.labels.get(cm.LABEL_NODE_ID) != node_id:
            continue
        tid = c.labels.get(cm.LABEL_TASK_ID)
        if not tid:
            strays.append(c.id)
            continue
        prev = found.get(tid)
        if prev is None or (c.running and not prev.running):
            found[tid] = c
    return {tid: c.id for tid, c in found.items()}, strays
