"""`swarmlet service update / rollback / promote`, the --update-*/--rollback-*
policy flags (shared with `service create`), and the progress of a rolling
update.

The flags are resolved here, client-side: the command reads the service,
applies the flags to its spec (`apply_flags`, pure) and sends the whole new
spec with the version it read, so a concurrent change is refused rather than
overwritten."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, TextIO

import typer

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.client import Daemon, connect, handle_errors
from swarmlet.cli.output import task_state_name
from swarmlet.cli.parse import check_constraint, parse_cpus, parse_duration, parse_env, parse_size
from swarmlet.cli.service import _RESTART_CONDITIONS, DetachOpt, _opt, _parsed, app

US = pb.UpdateStatus
UC = pb.UpdateConfig

_ACTIONS = {"pause": UC.PAUSE, "continue": UC.CONTINUE, "rollback": UC.ROLLBACK}
_ORDERS = {"stop-first": UC.STOP_FIRST, "start-first": UC.START_FIRST}
POLL_INTERVAL = 0.25


@dataclass
class Policy:
    """The --update-* (or --rollback-*) flags as typed; None = not given."""

    parallelism: int | None = None
    delay: str | None = None
    failure_action: str | None = None
    monitor: str | None = None
    max_failure_ratio: float | None = None
    order: str | None = None
    canary: int | None = None
    auto_promote: bool | None = None


def apply_policy(cfg: pb.UpdateConfig, p: Policy, prefix: str) -> None:
    """Set the given flags on `cfg`; bad values raise typer.BadParameter
    naming the flag."""
    if p.parallelism is not None:
        if p.parallelism < 0:
            raise typer.BadParameter("must not be negative", param_hint=f"--{prefix}-parallelism")
        cfg.parallelism = p.parallelism
    if p.delay is not None:
        cfg.delay = _parsed(parse_duration, p.delay, f"--{prefix}-delay")
    if p.monitor is not None:
        cfg.monitor = _parsed(parse_duration, p.monitor, f"--{prefix}-monitor")
    if p.failure_action is not None:
        choices = dict(_ACTIONS)
        if prefix == "rollback":
            del choices["rollback"]  # a rollback is not itself rolled back
        v = choices.get(p.failure_action.lower())
        if v is None:
            raise typer.BadParameter(
                f"{p.failure_action!r} is not one of {', '.join(choices)}", param_hint=f"--{prefix}-failure-action"
            )
        cfg.failure_action = v
    if p.max_failure_ratio is not None:
        if not 0.0 <= p.max_failure_ratio <= 1.0:
            raise typer.BadParameter("must be between 0 and 1", param_hint=f"--{prefix}-max-failure-ratio")
        cfg.max_failure_ratio = p.max_failure_ratio
    if p.order is not None:
        v = _ORDERS.get(p.order.lower())
        if v is None:
            raise typer.BadParameter(f"{p.order!r} is not one of stop-first, start-first", param_hint=f"--{prefix}-order")
        cfg.order = v
    if p.canary is not None:
        if p.canary < 0:
            raise typer.BadParameter("must not be negative", param_hint="--update-canary")
        cfg.canary = p.canary
    if p.auto_promote is not None:
        cfg.auto_promote = p.auto_promote


def default_config() -> pb.UpdateConfig:
    # Swarm's defaults; the same values the manager fills in (updater.DEFAULT_CONFIG).
    return UC(parallelism=1, delay=0.0, failure_action=UC.PAUSE, monitor=5.0, max_failure_ratio=0.0, order=UC.STOP_FIRST)


def apply_flags(
    spec: pb.ServiceSpec,
    *,
    image: str | None = None,
    args: str | None = None,
    env_add: Sequence[str] = (),
    env_rm: Sequence[str] = (),
    replicas: int | None = None,
    constraint_add: Sequence[str] = (),
    constraint_rm: Sequence[str] = (),
    reserve_cpu: str | None = None,
    reserve_memory: str | None = None,
    limit_cpu: str | None = None,
    limit_memory: str | None = None,
    restart_condition: str | None = None,
    restart_delay: str | None = None,
    restart_max_attempts: int | None = None,
    restart_window: str | None = None,
    stop_grace_period: str | None = None,
    health_cmd: str | None = None,
    health_interval: str | None = None,
    health_timeout: str | None = None,
    health_retries: int | None = None,
    health_start_period: str | None = None,
    no_healthcheck: bool = False,
    force: bool = False,
    update: Policy | None = None,
    rollback: Policy | None = None,
    environ: Mapping[str, str] | None = None,
) -> pb.ServiceSpec:
    """A copy of `spec` with the `service update` flags applied."""
    out = pb.ServiceSpec()
    out.CopyFrom(spec)
    task = out.task
    c = task.container
    if image is not None:
        if not image.strip():
            raise typer.BadParameter("must not be empty", param_hint="--image")
        c.image = image.strip()
    if args is not None:
        try:
            parts = shlex.split(args)
        except ValueError as e:
            raise typer.BadParameter(f"cannot split {args!r}: {e}", param_hint="--args") from None
        del c.args[:]
        c.args.extend(parts)
    if env_rm or env_add:
        drop = set(env_rm)
        added = [_parsed(lambda v: parse_env([v], environ or {}), e, "--env-add") for e in env_add]
        added_keys = {kv.split("=", 1)[0] for items in added for kv in items}
        kept = [e for e in c.env if e.split("=", 1)[0] not in drop | added_keys]
        del c.env[:]
        c.env.extend(kept)
        for items in added:
            c.env.extend(items)
    if replicas is not None:
        if out.WhichOneof("mode") != "replicated":
            raise typer.BadParameter("only replicated services have replicas", param_hint="--replicas")
        if replicas < 0:
            raise typer.BadParameter("must not be negative", param_hint="--replicas")
        out.replicated.replicas = replicas
    if constraint_rm or constraint_add:
        drop = {_parsed(check_constraint, x, "--constraint-rm") for x in constraint_rm}
        kept = [x for x in task.placement.constraints if x not in drop]
        for x in constraint_add:
            x = _parsed(check_constraint, x, "--constraint-add")
            if x not in kept:
                kept.append(x)
        del task.placement.constraints[:]
        task.placement.constraints.extend(kept)
    res = task.resources
    for value, parser, target, field, hint in (
        (reserve_cpu, parse_cpus, res.reservations, "nano_cpus", "--reserve-cpu"),
        (reserve_memory, parse_size, res.reservations, "memory_bytes", "--reserve-memory"),
        (limit_cpu, parse_cpus, res.limits, "nano_cpus", "--limit-cpu"),
        (limit_memory, parse_size, res.limits, "memory_bytes", "--limit-memory"),
    ):
        if value is not None:
            setattr(target, field, _parsed(parser, value, hint))
    if not res.limits.ByteSize() and not res.reservations.ByteSize():
        task.ClearField("resources")
    rp = task.restart
    if restart_condition is not None:
        cond = _RESTART_CONDITIONS.get(restart_condition.lower())
        if cond is None:
            raise typer.BadParameter(
                f"{restart_condition!r} is not one of none, on-failure, any", param_hint="--restart-condition"
            )
        rp.condition = cond
    if restart_delay is not None:
        rp.delay = _parsed(parse_duration, restart_delay, "--restart-delay")
    if restart_max_attempts is not None:
        if restart_max_attempts < 0:
            raise typer.BadParameter("must not be negative", param_hint="--restart-max-attempts")
        rp.max_attempts = restart_max_attempts
    if restart_window is not None:
        rp.window = _parsed(parse_duration, restart_window, "--restart-window")
    if stop_grace_period is not None:
        c.stop_grace_period = _parsed(parse_duration, stop_grace_period, "--stop-grace-period")
    any_health = any(v is not None for v in (health_cmd, health_interval, health_timeout, health_retries, health_start_period))
    if no_healthcheck and any_health:
        raise typer.BadParameter("--no-healthcheck conflicts with the --health-* options", param_hint="--no-healthcheck")
    if no_healthcheck:
        c.has_healthcheck = True
        c.healthcheck.Clear()
        c.healthcheck.test.append("NONE")
    elif any_health:
        h = c.healthcheck
        if list(h.test[:1]) == ["NONE"]:
            h.Clear()  # re-enabling: the image's test unless --health-cmd gives one
        c.has_healthcheck = True
        if health_cmd is not None:
            if not health_cmd.strip():
                raise typer.BadParameter("must not be empty", param_hint="--health-cmd")
            del h.test[:]
            h.test.extend(["CMD-SHELL", health_cmd])
        if health_interval is not None:
            h.interval = _parsed(parse_duration, health_interval, "--health-interval")
        if health_timeout is not None:
            h.timeout = _parsed(parse_duration, health_timeout, "--health-timeout")
        if health_start_period is not None:
            h.start_period = _parsed(parse_duration, health_start_period, "--health-start-period")
        if health_retries is not None:
            if health_retries < 0:
                raise typer.BadParameter("must not be negative", param_hint="--health-retries")
            h.retries = health_retries
    if force:
        # A changed task spec with nothing else different: every task is replaced.
        task.force_update += 1
    for name, policy in (("update", update), ("rollback", rollback)):
        if policy is None:
            continue
        if not out.HasField(name):
            getattr(out, name).CopyFrom(default_config())
        apply_policy(getattr(out, name), policy, name)
    return out


# ---- progress ---------------------------------------------------------------------


@dataclass(frozen=True)
class UpdateVerdict:
    done: bool
    exit_code: int
    lines: tuple[str, ...]
    final: str = ""


def evaluate_update(svc: pb.Service, tasks: Sequence[pb.Task], started_at: float, rollback_cmd: bool = False) -> UpdateVerdict:
    """Pure: where the update started at `started_at` stands, one line per
    slot, and whether to stop watching (with the exit code and why)."""
    s = svc.update_status
    current = [
        t for t in tasks if t.desired_state <= pb.RUNNING and (t.spec_version == svc.spec_version or t.spec == svc.spec.task)
    ]
    by_slot: dict[str, pb.Task] = {}
    for t in sorted(current, key=lambda t: t.meta.created_at):
        by_slot[str(t.slot) if t.slot else t.node_id[:12]] = t
    if svc.spec.WhichOneof("mode") == "replicated":
        n = int(svc.spec.replicated.replicas)
        keys = [str(i) for i in range(1, n + 1)]
    else:
        keys = sorted(by_slot)
        n = len(keys)
    done_slots = sum(1 for k in keys if k in by_slot and by_slot[k].status.state == pb.RUNNING)
    lines = [f"overall progress: {done_slots} out of {n} tasks"]
    for k in keys:
        t = by_slot.get(k)
        label = f"{k}/{n}" if svc.spec.WhichOneof("mode") == "replicated" else k
        if t is None:
            lines.append(f"{label}: waiting")
        else:
            state = task_state_name(t.status.state)
            if t.desired_state == pb.READY:
                state = "ready (waiting for the old task to stop)"
            lines.append(f"{label}: {state}" + (f": {t.status.err}" if t.status.err else ""))
    state = US.State.Name(s.state).lower()
    lines.append(f"update status: {state}" + (f": {s.message}" if s.message else ""))
    if s.started_at + 1e-6 < started_at:
        return UpdateVerdict(False, 0, tuple(lines))  # our update is not visible yet
    if s.state == US.COMPLETED:
        return UpdateVerdict(True, 0, tuple(lines), "verify: Service converged (update completed)")
    if s.state == US.ROLLBACK_COMPLETED:
        if rollback_cmd:
            return UpdateVerdict(True, 0, tuple(lines), "rollback: Service converged (rollback completed)")
        return UpdateVerdict(True, 1, tuple(lines), f"Error: {s.message or 'update rolled back'}")
    if s.state in (US.PAUSED, US.ROLLBACK_PAUSED):
        return UpdateVerdict(True, 1, tuple(lines), f"Error: {s.message or state}")
    if s.state == US.UPDATING and s.canaries_ready and not s.promoted:
        return UpdateVerdict(True, 0, tuple(lines), f"canaries ready: {s.message}")
    return UpdateVerdict(False, 0, tuple(lines))


def watch_update(
    d: Daemon,
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
    seen: dict[str, str] = {}
    start = time.monotonic()
    try:
        while True:
            svc = d.call(d.stub.GetService, cpb.GetServiceRequest(ref=service_id)).service
            tasks = d.call(d.stub.ListTasks, cpb.ListTasksRequest(service_ref=svc.id)).tasks
            v = evaluate_update(svc, tasks, started_at, rollback_cmd)
            if not quiet:
                for line in v.lines:
                    key = line.split(":", 1)[0]
                    if seen.get(key) != line:
                        seen[key] = line
                        out.write(line + "\n")
                out.flush()
            if v.done:
                stream = err if v.exit_code else out
                stream.write(v.final + "\n")
                stream.flush()
                return v.exit_code
            if timeout is not None and time.monotonic() - start > timeout:
                err.write(f"Error: the update of {svc.spec.name} did not finish within {timeout:g}s\n")
                return 1
            time.sleep(POLL_INTERVAL)
    except KeyboardInterrupt:
        err.write("\nOperation continuing in background.\n")
        return 0


def apply_network_changes(
    spec: pb.ServiceSpec, add: Sequence[str], rm: Sequence[str], lookup: Callable[[str], pb.Network]
) -> pb.ServiceSpec:
    """A copy of `spec` attached to the `add` networks and detached from the `rm`
    ones (names or ids; `lookup` resolves them through the daemon). Networks
    live outside the task spec, but each task carries its own attachments, so
    the tasks are redeployed (as with --force) to pick the change up."""
    out = pb.ServiceSpec()
    out.CopyFrom(spec)
    attached = [a.target for a in out.networks]
    for ref in rm:
        net = lookup(ref)
        if net.id not in attached:
            raise typer.BadParameter(f"the service is not attached to network {ref!r}", param_hint="--network-rm")
        attached.remove(net.id)
    for ref in add:
        net = lookup(ref)
        if net.id in attached:
            raise typer.BadParameter(f"the service is already attached to network {ref!r}", param_hint="--network-add")
        attached.append(net.id)
    del out.networks[:]
    for nid in attached:
        out.networks.add(target=nid)
    out.task.force_update += 1
    return out


# ---- commands ---------------------------------------------------------------------


@app.command("update")
@handle_errors
def update_cmd(
    ctx: typer.Context,
    service_ref: Annotated[str, typer.Argument(metavar="SERVICE")],
    image: Annotated[str | None, typer.Option("--image", metavar="IMAGE", help="Service image tag.")] = None,
    args: Annotated[str | None, typer.Option("--args", metavar="ARGS", help="Service command args (split like a shell).")] = None,
    env_add: Annotated[
        list[str] | None, typer.Option("--env-add", metavar="K=V", help="Add or update an environment variable.")
    ] = None,
    env_rm: Annotated[list[str] | None, typer.Option("--env-rm", metavar="K", help="Remove an environment variable.")] = None,
    replicas: Annotated[int | None, typer.Option("--replicas", min=0, metavar="N", help="Number of tasks.")] = None,
    constraint_add: Annotated[
        list[str] | None, typer.Option("--constraint-add", metavar="EXPR", help="Add a placement constraint.")
    ] = None,
    constraint_rm: Annotated[
        list[str] | None, typer.Option("--constraint-rm", metavar="EXPR", help="Remove a placement constraint.")
    ] = None,
    reserve_cpu: Annotated[str | None, typer.Option("--reserve-cpu", metavar="CPUS")] = None,
    reserve_memory: Annotated[str | None, typer.Option("--reserve-memory", metavar="BYTES")] = None,
    limit_cpu: Annotated[str | None, typer.Option("--limit-cpu", metavar="CPUS")] = None,
    limit_memory: Annotated[str | None, typer.Option("--limit-memory", metavar="BYTES")] = None,
    restart_condition: Annotated[
        str | None, typer.Option("--restart-condition", metavar="COND", help="none, on-failure or any.")
    ] = None,
    restart_delay: Annotated[str | None, typer.Option("--restart-delay", metavar="DURATION")] = None,
    restart_max_attempts: Annotated[int | None, typer.Option("--restart-max-attempts", min=0, metavar="N")] = None,
    restart_window: Annotated[str | None, typer.Option("--restart-window", metavar="DURATION")] = None,
    stop_grace_period: Annotated[str | None, typer.Option("--stop-grace-period", metavar="DURATION")] = None,
    health_cmd: Annotated[str | None, typer.Option("--health-cmd", metavar="CMD")] = None,
    health_interval: Annotated[str | None, typer.Option("--health-interval", metavar="DURATION")] = None,
    health_timeout: Annotated[str | None, typer.Option("--health-timeout", metavar="DURATION")] = None,
    health_retries: Annotated[int | None, typer.Option("--health-retries", min=0, metavar="N")] = None,
    health_start_period: Annotated[str | None, typer.Option("--health-start-period", metavar="DURATION")] = None,
    no_healthcheck: Annotated[bool, typer.Option("--no-healthcheck", help="Disable any container health check.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace every task even if nothing changed.")] = False,
    network_add: Annotated[
        list[str] | None,
        typer.Option("--network-add", metavar="NETWORK", help="Attach the service to a network (tasks are replaced)."),
    ] = None,
    network_rm: Annotated[
        list[str] | None,
        typer.Option("--network-rm", metavar="NETWORK", help="Detach the service from a network (tasks are replaced)."),
    ] = None,
    update_parallelism: Annotated[
        int | None, typer.Option("--update-parallelism", min=0, metavar="N", help="Tasks updated at once (0 = all; default 1).")
    ] = None,
    update_delay: Annotated[
        str | None, typer.Option("--update-delay", metavar="DURATION", help="Delay between updates (default 0s).")
    ] = None,
    update_failure_action: Annotated[
        str | None, typer.Option("--update-failure-action", metavar="ACTION", help="pause, continue or rollback (default pause).")
    ] = None,
    update_monitor: Annotated[
        str | None, typer.Option("--update-monitor", metavar="DURATION", help="Time a new task must stay healthy (default 5s).")
    ] = None,
    update_max_failure_ratio: Annotated[
        float | None, typer.Option("--update-max-failure-ratio", metavar="RATIO", help="Failure rate tolerated (default 0).")
    ] = None,
    update_order: Annotated[
        str | None, typer.Option("--update-order", metavar="ORDER", help="stop-first or start-first (default stop-first).")
    ] = None,
    update_canary: Annotated[
        int | None,
        typer.Option(
            "--update-canary", min=0, metavar="N", help="Start N new tasks beside the old ones and wait for `service promote`."
        ),
    ] = None,
    update_auto_promote: Annotated[
        bool | None,
        typer.Option(
            "--update-auto-promote/--no-update-auto-promote", help="Promote canaries once healthy through the monitor period."
        ),
    ] = None,
    rollback_parallelism: Annotated[int | None, typer.Option("--rollback-parallelism", min=0, metavar="N")] = None,
    rollback_delay: Annotated[str | None, typer.Option("--rollback-delay", metavar="DURATION")] = None,
    rollback_failure_action: Annotated[
        str | None, typer.Option("--rollback-failure-action", metavar="ACTION", help="pause or continue.")
    ] = None,
    rollback_monitor: Annotated[str | None, typer.Option("--rollback-monitor", metavar="DURATION")] = None,
    rollback_max_failure_ratio: Annotated[float | None, typer.Option("--rollback-max-failure-ratio", metavar="RATIO")] = None,
    rollback_order: Annotated[str | None, typer.Option("--rollback-order", metavar="ORDER")] = None,
    detach: DetachOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Suppress progress output.")] = False,
    timeout: Annotated[str | None, typer.Option("--timeout", hidden=True, metavar="DURATION")] = None,
) -> None:
    """Update a service: a changed task spec is rolled out by the update policy."""
    import os

    limit = _opt(parse_duration, timeout, "--timeout")
    upd = Policy(
        update_parallelism,
        update_delay,
        update_failure_action,
        update_monitor,
        update_max_failure_ratio,
        update_order,
        update_canary,
        update_auto_promote,
    )
    rb = Policy(
        rollback_parallelism,
        rollback_delay,
        rollback_failure_action,
        rollback_monitor,
        rollback_max_failure_ratio,
        rollback_order,
    )
    with connect(ctx) as d:
        before = d.call(d.stub.GetService, cpb.GetServiceRequest(ref=service_ref)).service
        spec = apply_flags(
            before.spec,
            image=image,
            args=args,
            env_add=env_add or [],
            env_rm=env_rm or [],
            replicas=replicas,
            constraint_add=constraint_add or [],
            constraint_rm=constraint_rm or [],
            reserve_cpu=reserve_cpu,
            reserve_memory=reserve_memory,
            limit_cpu=limit_cpu,
            limit_memory=limit_memory,
            restart_condition=restart_condition,
            restart_delay=restart_delay,
            restart_max_attempts=restart_max_attempts,
            restart_window=restart_window,
            stop_grace_period=stop_grace_period,
            health_cmd=health_cmd,
            health_interval=health_interval,
            health_timeout=health_timeout,
            health_retries=health_retries,
            health_start_period=health_start_period,
            no_healthcheck=no_healthcheck,
            force=force,
            update=upd,
            rollback=rb,
            environ=os.environ,
        )
        if network_add or network_rm:
            spec = apply_network_changes(
                spec,
                network_add or [],
                network_rm or [],
                lambda ref: d.call(d.stub.GetNetwork, cpb.GetNetworkRequest(ref=ref)).network,
            )
        svc = d.call(
            d.stub.UpdateService, cpb.UpdateServiceRequest(ref=before.id, version=before.meta.version, spec=spec)
        ).service
        typer.echo(svc.spec.name)
        if detach:
            return
        started = svc.update_status.started_at != before.update_status.started_at
        if started:
            code = watch_update(d, svc.id, svc.update_status.started_at, quiet=quiet, timeout=limit)
        else:
            from swarmlet.cli.progress import watch

            code = watch(d, svc.id, quiet=quiet, timeout=limit)
    if code:
        raise typer.Exit(code)


@app.command("rollback")
@handle_errors
def rollback_cmd(
    ctx: typer.Context,
    service_ref: Annotated[str, typer.Argument(metavar="SERVICE")],
    detach: DetachOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Suppress progress output.")] = False,
) -> None:
    """Revert a service to its previous spec, under its rollback policy."""
    with connect(ctx) as d:
        svc = d.call(d.stub.RollbackService, cpb.RollbackServiceRequest(ref=service_ref)).service
        typer.echo(svc.spec.name)
        if detach:
            return
        code = watch_update(d, svc.id, svc.update_status.started_at, quiet=quiet, rollback_cmd=True)
    if code:
        raise typer.Exit(code)


@app.command("promote")
@handle_errors
def promote_cmd(
    ctx: typer.Context,
    service_ref: Annotated[str, typer.Argument(metavar="SERVICE")],
    detach: DetachOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Suppress progress output.")] = False,
) -> None:
    """Promote a canary update: continue the rolling update past the canaries."""
    with connect(ctx) as d:
        svc = d.call(d.stub.PromoteService, cpb.PromoteServiceRequest(ref=service_ref)).service
        typer.echo(svc.spec.name)
        if detach:
            return
        code = watch_update(d, svc.id, svc.update_status.started_at, quiet=quiet)
    if code:
        raise typer.Exit(code)
