"""The service options of issue 11 -> ServiceSpec: container options
(--user, --cap-add, --sysctl, --dns, --host, ...), jobs (--mode
replicated-job|global-job, --max-concurrent), placement (--placement-pref,
--replicas-max-per-node, --generic-resource), and the `service update`
changes (--label-add, --publish-rm, --host-rm, ...).

Pure (no daemon, no clock), like service_spec.py which calls it: bad values
raise typer.BadParameter naming the flag, before anything is sent. The
manager checks the spec again (core/service_options.py) with the same names.
`read_env_files` is the one function that reads files (--env-file)."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import typer
from google.protobuf.message import Message

from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.options import parsed
from swarmlet.cli.parse import parse_duration, parse_env, parse_kv, parse_publish
from swarmlet.cli.service_flags import ContainerCreateFlags, ContainerFlags, ContainerUpdateFlags
from swarmlet.core import constraints, generic
from swarmlet.core import service_options as so

T = TypeVar("T")

MODES = ("replicated", "global", "replicated-job", "global-job")
_ENDPOINT_MODES = {"vip": pb.EndpointSpec.VIP, "dnsrr": pb.EndpointSpec.DNSRR}


def _core(fn: Callable[[str], T], value: str, hint: str) -> T:
    """A core parser's error (errors.Invalid) as a usage error on `hint`."""
    try:
        return fn(value)
    except (so.OptionError, generic.GenericResourceError, constraints.ConstraintError) as e:
        raise typer.BadParameter(str(e), param_hint=hint) from None


def _kv(text: str, hint: str, what: str) -> tuple[str, str]:
    k, v = parsed(lambda t: parse_kv(t, what=what), text, hint)
    return k, v


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _replace(field: object, values: Iterable[object]) -> None:
    """Set a repeated field to `values`, which may be its own elements
    (messages are copied before the field is cleared)."""
    vals = [_clone(v) if isinstance(v, Message) else v for v in values]
    del field[:]  # type: ignore[attr-defined]
    field.extend(vals)  # type: ignore[attr-defined]


def _clone(m: Message) -> Message:
    out = type(m)()
    out.CopyFrom(m)
    return out


# ---- the mode ------------------------------------------------------------------------


def apply_mode(spec: pb.ServiceSpec, mode: str | None, replicas: int | None, max_concurrent: int | None) -> None:
    """--mode, --replicas and --max-concurrent, with docker's rules: jobs run
    --replicas completions, --max-concurrent at a time (default: --replicas)."""
    name = (mode or "replicated").lower()
    if name not in MODES:
        raise typer.BadParameter(f"{mode!r} is not one of {', '.join(MODES)}", param_hint="--mode")
    if replicas is not None and replicas < 0:
        raise typer.BadParameter("must not be negative", param_hint="--replicas")
    if name in ("global", "global-job") and replicas is not None:
        raise typer.BadParameter(
            f"cannot be combined with --mode {name} (one task per node): replicas are for replicated or replicated-job mode",
            param_hint="--replicas",
        )
    if name != "replicated-job" and max_concurrent is not None:
        raise typer.BadParameter("can only be used with --mode replicated-job", param_hint="--max-concurrent")
    if name == "global":
        # "global" is a Python keyword, so the generated field is only reachable by name.
        getattr(spec, "global").SetInParent()
    elif name == "global-job":
        spec.global_job.SetInParent()
    elif name == "replicated-job":
        total = 1 if replicas is None else replicas
        spec.replicated_job.total_completions = total
        spec.replicated_job.max_concurrent = total if max_concurrent is None else max_concurrent
    else:
        spec.replicated.replicas = 1 if replicas is None else replicas


def is_job(spec: pb.ServiceSpec) -> bool:
    return spec.WhichOneof("mode") in ("replicated_job", "global_job")


# ---- options both commands share -------------------------------------------------------


def _caps(values: Sequence[str], hint: str) -> list[str]:
    return _dedupe(_core(so.capability, v, hint) for v in values)


def apply_container(spec: pb.ServiceSpec, f: ContainerFlags, *, create: bool) -> None:
    """The ContainerFlags given. On update, --cap-add/--cap-drop move
    capabilities between the two lists as docker does (adding one that was
    dropped only un-drops it; "ALL" resets a list)."""
    task = spec.task
    c = task.container
    if f.user is not None:
        c.user = f.user.strip()
    if f.workdir is not None:
        c.dir = f.workdir.strip()
    if f.hostname is not None:
        c.hostname = f.hostname.strip()
    if f.init is not None:
        c.init = f.init
    if f.read_only is not None:
        c.read_only = f.read_only
    if f.tty is not None:
        c.tty = f.tty
    if f.stop_signal is not None:
        c.stop_signal = _core(so.signal_name, f.stop_signal, "--stop-signal") if f.stop_signal.strip() else ""
    add, drop = _caps(f.cap_add or [], "--cap-add"), _caps(f.cap_drop or [], "--cap-drop")
    if create:
        _replace(c.cap_add, add)
        _replace(c.cap_drop, drop)
    elif add or drop:
        _update_caps(c, add, drop)
    if f.log_opt and f.log_driver is None:
        raise typer.BadParameter("needs --log-driver (the options replace the driver's)", param_hint="--log-opt")
    if f.log_driver is not None:
        task.log_driver.Clear()
        if f.log_driver.strip():
            task.log_driver.name = f.log_driver.strip()
    for item in f.log_opt or []:
        k, v = _kv(item, "--log-opt", "log option")
        task.log_driver.options[k] = v
    if not task.log_driver.name and not task.log_driver.options:
        task.ClearField("log_driver")
    if f.limit_pids is not None:
        task.resources.limits.pids = f.limit_pids
    if f.replicas_max_per_node is not None:
        task.placement.max_replicas = f.replicas_max_per_node
    if f.max_concurrent is not None:
        if spec.WhichOneof("mode") != "replicated_job":
            raise typer.BadParameter("can only be used with replicated-job mode", param_hint="--max-concurrent")
        spec.replicated_job.max_concurrent = f.max_concurrent
    if f.health_start_interval is not None:
        if list(c.healthcheck.test[:1]) == ["NONE"]:
            raise typer.BadParameter("conflicts with --no-healthcheck", param_hint="--health-start-interval")
        c.has_healthcheck = True
        c.healthcheck.start_interval = parsed(parse_duration, f.health_start_interval, "--health-start-interval")


def _update_caps(c: pb.ContainerSpec, add: list[str], drop: list[str]) -> None:
    cap_add, cap_drop = dict.fromkeys(c.cap_add), dict.fromkeys(c.cap_drop)
    if "ALL" in add:
        cap_add = {}
        add = [x for x in add if x != "ALL"]
    if "ALL" in drop:
        cap_drop = {}
        drop = [x for x in drop if x != "ALL"]
    for x in drop:
        if x not in add:
            if x in cap_add:
                del cap_add[x]
            else:
                cap_drop[x] = None
    for x in add:
        if x in cap_drop:
            del cap_drop[x]
        else:
            cap_add[x] = None
    _replace(c.cap_add, ["ALL"] if "ALL" in cap_add else sorted(cap_add))
    _replace(c.cap_drop, ["ALL"] if "ALL" in cap_drop else sorted(cap_drop))


def job_defaults(spec: pb.ServiceSpec, restart_condition_given: bool) -> None:
    """A job's tasks restart only on failure unless told otherwise (a task
    that completes is done), and a job has no update policy."""
    if not is_job(spec):
        return
    if not restart_condition_given:
        spec.task.restart.condition = pb.RestartPolicy.ON_FAILURE
    if spec.HasField("update") or spec.HasField("rollback"):
        raise typer.BadParameter("update and rollback configuration is not supported for jobs", param_hint="--update-*")


# ---- service create ----------------------------------------------------------------------


def read_env_files(paths: Sequence[str]) -> list[str]:
    """The lines of --env-file files that set variables (KEY=VALUE or KEY),
    in order; blank lines and # comments are skipped, as docker does."""
    out: list[str] = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as e:
            raise typer.BadParameter(f"cannot read {path!r}: {e.strerror or e}", param_hint="--env-file") from None
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.lstrip()
            if not line or line.startswith("#"):
                continue
            key = line.split("=", 1)[0]
            if not key or any(ch.isspace() for ch in key):
                raise typer.BadParameter(f"{path}:{n}: variable {key!r} contains whitespaces", param_hint="--env-file")
            out.append(line)
    return out


def apply_create(
    spec: pb.ServiceSpec, f: ContainerCreateFlags, env_file_lines: Sequence[str], environ: Mapping[str, str]
) -> None:
    """The list-valued options of `service create`. --env-file variables
    come before --env ones (already in the spec), which win."""
    c = spec.task.container
    if env_file_lines:
        from_files = parsed(lambda lines: parse_env(lines, environ), list(env_file_lines), "--env-file")
        given = {e.split("=", 1)[0] for e in c.env}
        merged: dict[str, str] = {}
        for e in from_files:
            if e.split("=", 1)[0] not in given:
                merged[e.split("=", 1)[0]] = e
        _replace(c.env, list(merged.values()) + list(c.env))
    for item in f.sysctl or []:
        k, v = _sysctl(item, "--sysctl")
        c.sysctls[k] = v
    seen: dict[str, pb.Ulimit] = {}
    for item in f.ulimit or []:
        u = _core(so.parse_ulimit, item, "--ulimit")
        seen[u.name] = u
    c.ulimits.extend(seen.values())
    c.groups.extend(_dedupe(g.strip() for g in f.group or []))
    dns = c.dns_config
    dns.nameservers.extend(_dedupe(f.dns or []))
    dns.search.extend(_dedupe(f.dns_search or []))
    dns.options.extend(_dedupe(f.dns_option or []))
    if not dns.ByteSize():
        c.ClearField("dns_config")
    c.hosts.extend(_dedupe(_host(h, "--host") for h in f.host or []))
    for p in f.placement_pref or []:
        spec.task.placement.preferences.add(spread=_pref(p, "--placement-pref"))
    kinds: dict[str, pb.GenericResource] = {}
    for item in f.generic_resource or []:
        g = _core(generic.parse_request, item, "--generic-resource")
        kinds[g.kind] = g
    if kinds:
        spec.task.resources.reservations.generic.extend(kinds.values())


def _sysctl(item: str, hint: str) -> tuple[str, str]:
    k, sep, v = item.partition("=")
    if not sep:
        raise typer.BadParameter(f"invalid sysctl {item!r}: expected KEY=VALUE", param_hint=hint)
    _core(lambda _: so.check_sysctl(k.strip(), v.strip()), item, hint)
    return k.strip(), v.strip()


def _host(item: str, hint: str) -> str:
    """docker's HOST:IP (the IP may be IPv6, so split at the first ':')."""
    host, sep, ip = item.partition(":")
    if not sep:
        raise typer.BadParameter(f"invalid host {item!r}: expected HOST:IP", param_hint=hint)
    return _core(lambda _: so.host_entry(host, ip), item, hint)


def _pref(item: str, hint: str) -> str:
    strategy, sep, descriptor = item.partition("=")
    if not sep or strategy.strip().lower() != "spread":
        raise typer.BadParameter(
            f"invalid placement preference {item!r}: expected spread=node.labels.<label> (only spread is supported)",
            param_hint=hint,
        )
    return _core(constraints.parse_spread, descriptor, hint).descriptor


# ---- service update ----------------------------------------------------------------------


def apply_update(spec: pb.ServiceSpec, f: ContainerUpdateFlags) -> None:
    """The -add/-rm flags of `service update` (removals first, then
    additions, as docker applies them), --entrypoint and --endpoint-mode."""
    c = spec.task.container
    if f.entrypoint is not None:
        try:
            parts = shlex.split(f.entrypoint)
        except ValueError as e:
            raise typer.BadParameter(f"cannot split {f.entrypoint!r}: {e}", param_hint="--entrypoint") from None
        _replace(c.command, parts)
    for key in f.label_rm or []:
        spec.labels.pop(key, None)
    for item in f.label_add or []:
        k, v = _kv(item, "--label-add", "label")
        spec.labels[k] = v
    for key in f.container_label_rm or []:
        c.labels.pop(key, None)
    for item in f.container_label_add or []:
        k, v = _kv(item, "--container-label-add", "container label")
        c.labels[k] = v
    for key in f.sysctl_rm or []:
        c.sysctls.pop(key.split("=", 1)[0].strip(), None)
    for item in f.sysctl_add or []:
        k, v = _sysctl(item, "--sysctl-add")
        c.sysctls[k] = v
    limits = {u.name: u for u in c.ulimits}
    for name in f.ulimit_rm or []:
        limits.pop(name.split("=", 1)[0].strip(), None)
    for item in f.ulimit_add or []:
        u = _core(so.parse_ulimit, item, "--ulimit-add")
        limits[u.name] = u
    if f.ulimit_rm or f.ulimit_add:
        _replace(c.ulimits, [limits[k] for k in sorted(limits)])
    _add_rm(c.groups, f.group_add, f.group_rm)
    dns = c.dns_config
    _add_rm(dns.nameservers, f.dns_add, f.dns_rm)
    _add_rm(dns.search, f.dns_search_add, f.dns_search_rm)
    _add_rm(dns.options, f.dns_option_add, f.dns_option_rm)
    if not dns.ByteSize():
        c.ClearField("dns_config")
    if f.host_rm or f.host_add:
        _replace(c.hosts, _update_hosts(list(c.hosts), f.host_add or [], f.host_rm or []))
    placement = spec.task.placement
    if f.placement_pref_rm or f.placement_pref_add:
        gone = {_pref(p, "--placement-pref-rm") for p in f.placement_pref_rm or []}
        kept = [p.spread for p in placement.preferences if p.spread not in gone]
        kept += [_pref(p, "--placement-pref-add") for p in f.placement_pref_add or []]
        del placement.preferences[:]
        for d in kept:
            placement.preferences.add(spread=d)
    res = spec.task.resources.reservations
    if f.generic_resource_rm or f.generic_resource_add:
        kinds = {g.kind: g for g in res.generic}
        for k in f.generic_resource_rm or []:
            kinds.pop(k.split("=", 1)[0].strip(), None)
        for item in f.generic_resource_add or []:
            g = _core(generic.parse_request, item, "--generic-resource-add")
            kinds[g.kind] = g
        _replace(res.generic, [kinds[k] for k in sorted(kinds)])
    _update_ports(spec, f.publish_add or [], f.publish_rm or [])
    if f.endpoint_mode is not None:
        mode = _ENDPOINT_MODES.get(f.endpoint_mode.lower())
        if mode is None:
            raise typer.BadParameter(f"{f.endpoint_mode!r} is not one of vip, dnsrr", param_hint="--endpoint-mode")
        spec.endpoint.mode = mode


def _add_rm(field: object, add: Sequence[str] | None, rm: Sequence[str] | None) -> None:
    if not add and not rm:
        return
    gone = {x.strip() for x in rm or []}
    kept = [x for x in field if x not in gone]  # type: ignore[attr-defined]
    _replace(field, _dedupe(kept + [x.strip() for x in add or []]))


def _update_hosts(lines: list[str], add: Sequence[str], rm: Sequence[str]) -> list[str]:
    """--host-rm HOST removes the name from every line, HOST:IP only from
    lines of that IP; a line left without names goes. Then --host-add."""
    removals = [(h.partition(":")[0].strip(), h.partition(":")[2].strip()) for h in rm]
    out: list[str] = []
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        ip, names = parts[0], parts[1:]
        for host, rm_ip in removals:
            if not rm_ip or rm_ip == ip:
                names = [n for n in names if n != host]
        if names:
            out.append(" ".join([ip, *names]))
    out += [_host(h, "--host-add") for h in add]
    return _dedupe(out)


def _update_ports(spec: pb.ServiceSpec, add: Sequence[str], rm: Sequence[str]) -> None:
    """--publish-rm removes the ports of that target port, protocol and mode;
    --publish-add adds ports (a port already published as given is kept)."""
    if not add and not rm:
        return
    gone = [p for item in rm for p in _publish_rm(item)]
    kept = [
        p
        for p in spec.endpoint.ports
        if not any(p.target_port == g.target_port and p.protocol == g.protocol and p.publish_mode == g.publish_mode for g in gone)
    ]
    key = [(p.published_port, p.target_port, p.protocol, p.publish_mode) for p in kept]
    for item in add:
        for p in parsed(parse_publish, item, "--publish-add"):
            k = (p.published_port, p.target_port, p.protocol, p.publish_mode)
            if k not in key:
                kept.append(p)
                key.append(k)
    _replace(spec.endpoint.ports, kept)


def _publish_rm(item: str) -> list[pb.PortConfig]:
    """`80`, `80/udp`, `8080:80` or `target=80,protocol=udp,mode=host`: the
    target ports to remove."""
    return parsed(parse_publish, item, "--publish-rm")
