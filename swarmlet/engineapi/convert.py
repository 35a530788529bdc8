"""Docker's Engine API JSON (v1.41, swarm objects) <-> swarmlet's protobufs.

Pure: no sockets, no clocks, no HTTP. Going in (a client's ServiceSpec or
network create body), every field swarmlet does not carry is refused with
errors.Invalid naming it, unless it holds its empty or default value (the
docker CLI sends `"Isolation": "default"`, `"Runtime": "container"`, empty
maps...): nothing a user asked for is silently dropped. Going out, the shapes
are docker's, holding the fields swarmlet has, so that what
`docker service inspect` prints can be sent back by `docker service update`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from swarmlet import errors
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import images as im
from swarmlet.core import lookup

Json = dict[str, Any]
T = TypeVar("T")

NS = 1_000_000_000
# Docker's zero time, for timestamps swarmlet never set.
ZERO_TIME = "0001-01-01T00:00:00Z"
# Docker's defaults for a spec that leaves them out (swarmkit applies them).
DEFAULT_STOP_GRACE = 10.0
DEFAULT_RESTART_DELAY = 5.0

UC = pb.UpdateConfig
_RESTART = {"any": pb.RestartPolicy.ANY, "on-failure": pb.RestartPolicy.ON_FAILURE, "none": pb.RestartPolicy.NONE}
_ACTIONS = {"pause": UC.PAUSE, "continue": UC.CONTINUE, "rollback": UC.ROLLBACK}
_ORDERS = {"stop-first": UC.STOP_FIRST, "start-first": UC.START_FIRST}
_ENDPOINT_MODES = {"vip": pb.EndpointSpec.VIP, "dnsrr": pb.EndpointSpec.DNSRR}
_PROTOCOLS = {"tcp": pb.PortConfig.TCP, "udp": pb.PortConfig.UDP, "sctp": pb.PortConfig.SCTP}
_PUBLISH = {"ingress": pb.PortConfig.INGRESS, "host": pb.PortConfig.HOST}
_MOUNTS = {"volume": pb.Mount.VOLUME, "bind": pb.Mount.BIND, "tmpfs": pb.Mount.TMPFS}
_UPDATE_STATES = {
    pb.UpdateStatus.UPDATING: "updating",
    pb.UpdateStatus.PAUSED: "paused",
    pb.UpdateStatus.COMPLETED: "completed",
    pb.UpdateStatus.ROLLBACK_STARTED: "rollback_started",
    pb.UpdateStatus.ROLLBACK_PAUSED: "rollback_paused",
    pb.UpdateStatus.ROLLBACK_COMPLETED: "rollback_completed",
}
_NODE_STATES = {
    pb.NodeStatus.UNKNOWN: "unknown",
    pb.NodeStatus.DOWN: "down",
    pb.NodeStatus.READY: "ready",
    pb.NodeStatus.DISCONNECTED: "disconnected",
}
_REACH = {
    pb.ManagerStatus.UNKNOWN: "unknown",
    pb.ManagerStatus.UNREACHABLE: "unreachable",
    pb.ManagerStatus.REACHABLE: "reachable",
}
_ROLES = {pb.NodeSpec.WORKER: "worker", pb.NodeSpec.MANAGER: "manager"}
_AVAILABILITY = {pb.NodeSpec.ACTIVE: "active", pb.NodeSpec.PAUSE: "pause", pb.NodeSpec.DRAIN: "drain"}


def _inverse(m: Mapping[Any, Any]) -> dict[Any, Any]:
    return {v: k for k, v in m.items()}


# ---------------------------------------------------------------- helpers


def timestamp(seconds: float) -> str:
    """Unix seconds as docker's RFC 3339 (nanosecond form, UTC)."""
    if not seconds:
        return ZERO_TIME
    t = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond:06d}000Z"


def _ns(seconds: float) -> int:
    # Whole seconds apart: a double near 1.7e18 is not exact to the nanosecond.
    whole = int(seconds)
    return whole * NS + int(round((seconds - whole) * NS))


def _secs(ns: Any, path: str) -> float:
    if ns is None:
        return 0.0
    if not isinstance(ns, int) or isinstance(ns, bool) or ns < 0:
        raise errors.Invalid(f"{path}: expected a non-negative duration in nanoseconds, got {ns!r}")
    return ns / NS


def is_empty(value: Any) -> bool:
    """A JSON value that asks for nothing: null, "", 0, false, or a list or
    map of such values only."""
    if isinstance(value, dict):
        return all(is_empty(v) for v in value.values())
    if isinstance(value, list):
        return all(is_empty(v) for v in value)
    return value in (None, "", 0, False)


def _object(value: Any, path: str) -> Json:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.Invalid(f"{path}: expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise errors.Invalid(f"{path}: expected a list, got {type(value).__name__}")
    return value


def _strs(value: Any, path: str) -> list[str]:
    items = _list(value, path)
    if not all(isinstance(s, str) for s in items):
        raise errors.Invalid(f"{path}: expected a list of strings")
    return items


def _str_map(value: Any, path: str) -> dict[str, str]:
    m = _object(value, path)
    if not all(isinstance(v, str) for v in m.values()):
        raise errors.Invalid(f"{path}: expected a map of strings")
    return m


def _int(value: Any, path: str) -> int:
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise errors.Invalid(f"{path}: expected a non-negative integer, got {value!r}")
    return value


def _str(value: Any, path: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise errors.Invalid(f"{path}: expected a string, got {value!r}")
    return value


def _choice(value: Any, choices: Mapping[str, Any], path: str, default: Any) -> Any:
    if value in (None, ""):
        return default
    if value not in choices:
        raise errors.Invalid(f"{path}: {value!r} is not one of {', '.join(choices)}")
    return choices[value]


def check_fields(obj: Json, path: str, known: Iterable[str], defaults: Mapping[str, Iterable[Any]] | None = None) -> Json:
    """`obj` with its keys in docker's spelling (docker matches JSON keys
    without regard to case, and clients rely on it: docker-py sends
    "replicated"). A field swarmlet does not carry is refused, unless it is
    empty or one of the values `defaults` allows for it (what docker means
    by "not set")."""
    defaults = defaults or {}
    canonical = {k.lower(): k for k in (*known, *defaults)}
    out: Json = {}
    for key, value in obj.items():
        name = canonical.get(key.lower())
        if name is not None and name not in defaults:
            out[name] = value
            continue
        if is_empty(value) or (name is not None and value in defaults[name]):
            continue
        raise errors.Invalid(f"{path}.{name or key} is not supported by swarmlet (value {value!r})")
    return out


# ---------------------------------------------------------------- ServiceSpec in


def service_spec_from_docker(d: Any) -> pb.ServiceSpec:
    """A docker ServiceSpec (create or update body) as swarmlet's spec.
    Raises errors.Invalid naming the first field swarmlet cannot honour."""
    d = _object(d, "ServiceSpec")
    d = check_fields(
        d, "ServiceSpec", ("Name", "Labels", "TaskTemplate", "Mode", "UpdateConfig", "RollbackConfig", "EndpointSpec")
    )
    spec = pb.ServiceSpec(name=_str(d.get("Name"), "Name"))
    spec.labels.update(_str_map(d.get("Labels"), "Labels"))
    _task_in(_object(d.get("TaskTemplate"), "TaskTemplate"), spec)
    _mode_in(_object(d.get("Mode"), "Mode"), spec)
    for key, field in (("UpdateConfig", "update"), ("RollbackConfig", "rollback")):
        if d.get(key) is not None:
            getattr(spec, field).CopyFrom(_update_in(_object(d[key], key), key))
    if d.get("EndpointSpec") is not None:
        _endpoint_in(_object(d["EndpointSpec"], "EndpointSpec"), spec.endpoint)
    return spec


def _task_in(t: Json, spec: pb.ServiceSpec) -> None:
    p = "TaskTemplate"
    t = check_fields(
        t,
        p,
        ("ContainerSpec", "Resources", "RestartPolicy", "Placement", "ForceUpdate", "Networks", "LogDriver"),
        {"Runtime": ("container",)},
    )
    task = spec.task
    _container_in(_object(t.get("ContainerSpec"), f"{p}.ContainerSpec"), task.container)
    if t.get("Resources") is not None:
        _resources_in(_object(t["Resources"], f"{p}.Resources"), task.resources)
        if not task.resources.ByteSize():
            task.ClearField("resources")
    rp = _object(t.get("RestartPolicy"), f"{p}.RestartPolicy")
    rp = check_fields(rp, f"{p}.RestartPolicy", ("Condition", "Delay", "MaxAttempts", "Window"))
    task.restart.condition = _choice(rp.get("Condition"), _RESTART, f"{p}.RestartPolicy.Condition", pb.RestartPolicy.ANY)
    delay = rp.get("Delay")
    task.restart.delay = DEFAULT_RESTART_DELAY if delay is None else _secs(delay, f"{p}.RestartPolicy.Delay")
    task.restart.max_attempts = _int(rp.get("MaxAttempts"), f"{p}.RestartPolicy.MaxAttempts")
    task.restart.window = _secs(rp.get("Window"), f"{p}.RestartPolicy.Window")
    if t.get("Placement") is not None:
        _placement_in(_object(t["Placement"], f"{p}.Placement"), task.placement)
    task.force_update = _int(t.get("ForceUpdate"), f"{p}.ForceUpdate")
    for i, n in enumerate(_list(t.get("Networks"), f"{p}.Networks")):
        n = _object(n, f"{p}.Networks[{i}]")
        n = check_fields(n, f"{p}.Networks[{i}]", ("Target", "Aliases"))
        spec.networks.add(
            target=_str(n.get("Target"), f"{p}.Networks[{i}].Target"),
            aliases=_strs(n.get("Aliases"), f"{p}.Networks[{i}].Aliases"),
        )
    if t.get("LogDriver") is not None:
        ld = _object(t["LogDriver"], f"{p}.LogDriver")
        ld = check_fields(ld, f"{p}.LogDriver", ("Name", "Options"))
        task.log_driver.name = _str(ld.get("Name"), f"{p}.LogDriver.Name")
        task.log_driver.options.update(_str_map(ld.get("Options"), f"{p}.LogDriver.Options"))


_CONTAINER_FIELDS = (
    "Image",
    "Labels",
    "Command",
    "Args",
    "Hostname",
    "Env",
    "Dir",
    "User",
    "Groups",
    "TTY",
    "ReadOnly",
    "Mounts",
    "StopSignal",
    "StopGracePeriod",
    "HealthCheck",
    "Hosts",
    "DNSConfig",
    "Secrets",
    "Configs",
    "Init",
    "Sysctls",
    "CapabilityAdd",
    "CapabilityDrop",
    "Ulimits",
)


def _container_in(c: Json, out: pb.ContainerSpec) -> None:
    p = "TaskTemplate.ContainerSpec"
    c = check_fields(c, p, _CONTAINER_FIELDS, {"Isolation": ("default",)})
    out.image = _str(c.get("Image"), f"{p}.Image")
    out.labels.update(_str_map(c.get("Labels"), f"{p}.Labels"))
    out.command.extend(_strs(c.get("Command"), f"{p}.Command"))
    out.args.extend(_strs(c.get("Args"), f"{p}.Args"))
    out.hostname = _str(c.get("Hostname"), f"{p}.Hostname")
    out.env.extend(_strs(c.get("Env"), f"{p}.Env"))
    out.dir = _str(c.get("Dir"), f"{p}.Dir")
    out.user = _str(c.get("User"), f"{p}.User")
    out.groups.extend(_strs(c.get("Groups"), f"{p}.Groups"))
    out.tty = bool(c.get("TTY"))
    out.read_only = bool(c.get("ReadOnly"))
    out.init = bool(c.get("Init"))
    out.stop_signal = _str(c.get("StopSignal"), f"{p}.StopSignal")
    grace = c.get("StopGracePeriod")
    out.stop_grace_period = DEFAULT_STOP_GRACE if grace is None else _secs(grace, f"{p}.StopGracePeriod")
    out.hosts.extend(_strs(c.get("Hosts"), f"{p}.Hosts"))
    out.sysctls.update(_str_map(c.get("Sysctls"), f"{p}.Sysctls"))
    out.cap_add.extend(_strs(c.get("CapabilityAdd"), f"{p}.CapabilityAdd"))
    out.cap_drop.extend(_strs(c.get("CapabilityDrop"), f"{p}.CapabilityDrop"))
    if c.get("HealthCheck") is not None:
        h = _object(c["HealthCheck"], f"{p}.HealthCheck")
        h = check_fields(h, f"{p}.HealthCheck", ("Test", "Interval", "Timeout", "Retries", "StartPeriod", "StartInterval"))
        out.has_healthcheck = True
        hc = out.healthcheck
        hc.test.extend(_strs(h.get("Test"), f"{p}.HealthCheck.Test"))
        hc.interval = _secs(h.get("Interval"), f"{p}.HealthCheck.Interval")
        hc.timeout = _secs(h.get("Timeout"), f"{p}.HealthCheck.Timeout")
        hc.retries = _int(h.get("Retries"), f"{p}.HealthCheck.Retries")
        hc.start_period = _secs(h.get("StartPeriod"), f"{p}.HealthCheck.StartPeriod")
        hc.start_interval = _secs(h.get("StartInterval"), f"{p}.HealthCheck.StartInterval")
    if c.get("DNSConfig") is not None:
        d = _object(c["DNSConfig"], f"{p}.DNSConfig")
        d = check_fields(d, f"{p}.DNSConfig", ("Nameservers", "Search", "Options"))
        out.dns_config.nameservers.extend(_strs(d.get("Nameservers"), f"{p}.DNSConfig.Nameservers"))
        out.dns_config.search.extend(_strs(d.get("Search"), f"{p}.DNSConfig.Search"))
        out.dns_config.options.extend(_strs(d.get("Options"), f"{p}.DNSConfig.Options"))
        if not out.dns_config.ByteSize():
            out.ClearField("dns_config")
    for i, u in enumerate(_list(c.get("Ulimits"), f"{p}.Ulimits")):
        u = _object(u, f"{p}.Ulimits[{i}]")
        u = check_fields(u, f"{p}.Ulimits[{i}]", ("Name", "Soft", "Hard"))
        out.ulimits.add(
            name=_str(u.get("Name"), f"{p}.Ulimits[{i}].Name"), soft=int(u.get("Soft") or 0), hard=int(u.get("Hard") or 0)
        )
    for i, m in enumerate(_list(c.get("Mounts"), f"{p}.Mounts")):
        _mount_in(_object(m, f"{p}.Mounts[{i}]"), f"{p}.Mounts[{i}]", out.mounts.add())
    for key, refs in (("Secrets", out.secrets), ("Configs", out.configs)):
        kind = key[:-1]
        for i, r in enumerate(_list(c.get(key), f"{p}.{key}")):
            rp = f"{p}.{key}[{i}]"
            r = _object(r, rp)
            r = check_fields(r, rp, ("File", f"{kind}ID", f"{kind}Name"))
            ref = refs.add()
            setattr(ref, f"{kind.lower()}_id", _str(r.get(f"{kind}ID"), f"{rp}.{kind}ID"))
            setattr(ref, f"{kind.lower()}_name", _str(r.get(f"{kind}Name"), f"{rp}.{kind}Name"))
            f = _object(r.get("File"), f"{rp}.File")
            f = check_fields(f, f"{rp}.File", ("Name", "UID", "GID", "Mode"))
            ref.file.name = _str(f.get("Name"), f"{rp}.File.Name")
            ref.file.uid = _str(f.get("UID"), f"{rp}.File.UID")
            ref.file.gid = _str(f.get("GID"), f"{rp}.File.GID")
            ref.file.mode = _int(f.get("Mode"), f"{rp}.File.Mode")


def _mount_in(m: Json, p: str, out: pb.Mount) -> None:
    m = check_fields(
        m, p, ("Type", "Source", "Target", "ReadOnly", "VolumeOptions", "TmpfsOptions"), {"Consistency": ("default",)}
    )
    out.type = _choice(m.get("Type"), _MOUNTS, f"{p}.Type", pb.Mount.VOLUME)
    out.source = _str(m.get("Source"), f"{p}.Source")
    out.target = _str(m.get("Target"), f"{p}.Target")
    out.read_only = bool(m.get("ReadOnly"))
    v = _object(m.get("VolumeOptions"), f"{p}.VolumeOptions")
    v = check_fields(v, f"{p}.VolumeOptions", ("NoCopy", "Labels", "DriverConfig"))
    out.volume_nocopy = bool(v.get("NoCopy"))
    out.volume_labels.update(_str_map(v.get("Labels"), f"{p}.VolumeOptions.Labels"))
    drv = _object(v.get("DriverConfig"), f"{p}.VolumeOptions.DriverConfig")
    drv = check_fields(drv, f"{p}.VolumeOptions.DriverConfig", ("Name", "Options"))
    out.volume_driver = _str(drv.get("Name"), f"{p}.VolumeOptions.DriverConfig.Name")
    out.volume_options.update(_str_map(drv.get("Options"), f"{p}.VolumeOptions.DriverConfig.Options"))
    t = _object(m.get("TmpfsOptions"), f"{p}.TmpfsOptions")
    t = check_fields(t, f"{p}.TmpfsOptions", ("SizeBytes", "Mode"))
    out.tmpfs_size = _int(t.get("SizeBytes"), f"{p}.TmpfsOptions.SizeBytes")
    out.tmpfs_mode = _int(t.get("Mode"), f"{p}.TmpfsOptions.Mode")


def _resources_in(r: Json, out: pb.ResourceRequirements) -> None:
    p = "TaskTemplate.Resources"
    r = check_fields(r, p, ("Limits", "Reservations"))
    lim = _object(r.get("Limits"), f"{p}.Limits")
    lim = check_fields(lim, f"{p}.Limits", ("NanoCPUs", "MemoryBytes", "Pids"))
    out.limits.nano_cpus = _int(lim.get("NanoCPUs"), f"{p}.Limits.NanoCPUs")
    out.limits.memory_bytes = _int(lim.get("MemoryBytes"), f"{p}.Limits.MemoryBytes")
    out.limits.pids = _int(lim.get("Pids"), f"{p}.Limits.Pids")
    rsv = _object(r.get("Reservations"), f"{p}.Reservations")
    rsv = check_fields(rsv, f"{p}.Reservations", ("NanoCPUs", "MemoryBytes", "GenericResources"))
    out.reservations.nano_cpus = _int(rsv.get("NanoCPUs"), f"{p}.Reservations.NanoCPUs")
    out.reservations.memory_bytes = _int(rsv.get("MemoryBytes"), f"{p}.Reservations.MemoryBytes")
    for i, g in enumerate(_list(rsv.get("GenericResources"), f"{p}.Reservations.GenericResources")):
        gp = f"{p}.Reservations.GenericResources[{i}]"
        g = _object(g, gp)
        g = check_fields(g, gp, ("DiscreteResourceSpec", "NamedResourceSpec"))
        if g.get("DiscreteResourceSpec") is not None:
            s = _object(g["DiscreteResourceSpec"], gp)
            out.reservations.generic.add(
                kind=_str(s.get("Kind"), f"{gp}.Kind"), discrete_value=_int(s.get("Value"), f"{gp}.Value")
            )
        elif g.get("NamedResourceSpec") is not None:
            s = _object(g["NamedResourceSpec"], gp)
            out.reservations.generic.add(kind=_str(s.get("Kind"), f"{gp}.Kind"), named_value=_str(s.get("Value"), f"{gp}.Value"))
    for name in ("limits", "reservations"):
        if not getattr(out, name).ByteSize():
            out.ClearField(name)


def _placement_in(pl: Json, out: pb.Placement) -> None:
    p = "TaskTemplate.Placement"
    pl = check_fields(pl, p, ("Constraints", "Preferences", "MaxReplicas", "Platforms"))
    out.constraints.extend(_strs(pl.get("Constraints"), f"{p}.Constraints"))
    out.max_replicas = _int(pl.get("MaxReplicas"), f"{p}.MaxReplicas")
    for i, pref in enumerate(_list(pl.get("Preferences"), f"{p}.Preferences")):
        pp = f"{p}.Preferences[{i}]"
        pref = _object(pref, pp)
        pref = check_fields(pref, pp, ("Spread",))
        spread = _object(pref.get("Spread"), f"{pp}.Spread")
        spread = check_fields(spread, f"{pp}.Spread", ("SpreadDescriptor",))
        out.preferences.add(spread=_str(spread.get("SpreadDescriptor"), f"{pp}.Spread.SpreadDescriptor"))
    # docker's CLI copies them from GET /distribution when it resolves the
    # image; the scheduler then keeps tasks off nodes of other platforms.
    for i, plat in enumerate(_list(pl.get("Platforms"), f"{p}.Platforms")):
        pp = f"{p}.Platforms[{i}]"
        plat = check_fields(_object(plat, pp), pp, ("Architecture", "OS"))
        out.platforms.add(os=_str(plat.get("OS"), f"{pp}.OS"), architecture=_str(plat.get("Architecture"), f"{pp}.Architecture"))


def distribution_to_docker(d: im.Distribution) -> Json:
    """GET /distribution/{name}/json: the manifest's descriptor and its
    platforms, with OCI's keys (empty optional ones left out, as dockerd)."""
    platforms = []
    for p in d.platforms:
        out: Json = {"architecture": p.architecture, "os": p.os}
        if p.os_version:
            out["os.version"] = p.os_version
        if p.os_features:
            out["os.features"] = list(p.os_features)
        if p.variant:
            out["variant"] = p.variant
        platforms.append(out)
    return {"Descriptor": {"mediaType": d.media_type, "digest": d.digest, "size": d.size}, "Platforms": platforms}


def _mode_in(m: Json, spec: pb.ServiceSpec) -> None:
    m = check_fields(m, "Mode", ("Replicated", "Global", "ReplicatedJob", "GlobalJob"))
    given = [k for k in ("Replicated", "Global", "ReplicatedJob", "GlobalJob") if m.get(k) is not None]
    if len(given) > 1:
        raise errors.Invalid(f"Mode: only one of {', '.join(given)} may be set")
    if not given or given[0] == "Replicated":
        r = _object(m.get("Replicated"), "Mode.Replicated")
        r = check_fields(r, "Mode.Replicated", ("Replicas",))
        replicas = r.get("Replicas")
        spec.replicated.replicas = 1 if replicas is None else _int(replicas, "Mode.Replicated.Replicas")
    elif given[0] == "Global":
        check_fields(_object(m["Global"], "Mode.Global"), "Mode.Global", ())
        getattr(spec, "global").SetInParent()  # `global` is a Python keyword
    elif given[0] == "ReplicatedJob":
        j = _object(m["ReplicatedJob"], "Mode.ReplicatedJob")
        j = check_fields(j, "Mode.ReplicatedJob", ("MaxConcurrent", "TotalCompletions"))
        spec.replicated_job.max_concurrent = _int(j.get("MaxConcurrent"), "Mode.ReplicatedJob.MaxConcurrent")
        spec.replicated_job.total_completions = _int(j.get("TotalCompletions"), "Mode.ReplicatedJob.TotalCompletions")
    else:
        check_fields(_object(m["GlobalJob"], "Mode.GlobalJob"), "Mode.GlobalJob", ())
        spec.global_job.SetInParent()


def _update_in(u: Json, p: str) -> pb.UpdateConfig:
    u = check_fields(u, p, ("Parallelism", "Delay", "FailureAction", "Monitor", "MaxFailureRatio", "Order"))
    ratio = u.get("MaxFailureRatio") or 0
    if not isinstance(ratio, int | float) or isinstance(ratio, bool) or not 0 <= ratio <= 1:
        raise errors.Invalid(f"{p}.MaxFailureRatio: expected a number between 0 and 1, got {ratio!r}")
    return pb.UpdateConfig(
        parallelism=_int(u.get("Parallelism"), f"{p}.Parallelism"),
        delay=_secs(u.get("Delay"), f"{p}.Delay"),
        failure_action=_choice(u.get("FailureAction"), _ACTIONS, f"{p}.FailureAction", UC.PAUSE),
        monitor=_secs(u.get("Monitor"), f"{p}.Monitor"),
        max_failure_ratio=float(ratio),
        order=_choice(u.get("Order"), _ORDERS, f"{p}.Order", UC.STOP_FIRST),
    )


def _endpoint_in(e: Json, out: pb.EndpointSpec) -> None:
    e = check_fields(e, "EndpointSpec", ("Mode", "Ports"))
    out.mode = _choice(e.get("Mode"), _ENDPOINT_MODES, "EndpointSpec.Mode", pb.EndpointSpec.VIP)
    for i, port in enumerate(_list(e.get("Ports"), "EndpointSpec.Ports")):
        pp = f"EndpointSpec.Ports[{i}]"
        port = _object(port, pp)
        port = check_fields(port, pp, ("Protocol", "TargetPort", "PublishedPort", "PublishMode"))
        out.ports.add(
            protocol=_choice(port.get("Protocol"), _PROTOCOLS, f"{pp}.Protocol", pb.PortConfig.TCP),
            target_port=_int(port.get("TargetPort"), f"{pp}.TargetPort"),
            published_port=_int(port.get("PublishedPort"), f"{pp}.PublishedPort"),
            publish_mode=_choice(port.get("PublishMode"), _PUBLISH, f"{pp}.PublishMode", pb.PortConfig.INGRESS),
        )


# ---------------------------------------------------------------- ServiceSpec out


def _dur(seconds: float) -> int:
    return _ns(seconds)


def service_spec_to_docker(spec: pb.ServiceSpec) -> Json:
    out: Json = {"Name": spec.name, "Labels": dict(spec.labels), "TaskTemplate": task_spec_to_docker(spec.task, spec.networks)}
    mode = spec.WhichOneof("mode")
    if mode == "replicated":
        out["Mode"] = {"Replicated": {"Replicas": spec.replicated.replicas}}
    elif mode == "global":
        out["Mode"] = {"Global": {}}
    elif mode == "replicated_job":
        j = spec.replicated_job
        out["Mode"] = {"ReplicatedJob": {"MaxConcurrent": j.max_concurrent, "TotalCompletions": j.total_completions}}
    elif mode == "global_job":
        out["Mode"] = {"GlobalJob": {}}
    for field, key in (("update", "UpdateConfig"), ("rollback", "RollbackConfig")):
        if spec.HasField(field):
            u: pb.UpdateConfig = getattr(spec, field)
            out[key] = {
                "Parallelism": u.parallelism,
                "Delay": _dur(u.delay),
                "FailureAction": _inverse(_ACTIONS)[u.failure_action],
                "Monitor": _dur(u.monitor),
                "MaxFailureRatio": u.max_failure_ratio,
                "Order": _inverse(_ORDERS)[u.order],
            }
    out["EndpointSpec"] = endpoint_spec_to_docker(spec.endpoint)
    return out


def endpoint_spec_to_docker(e: pb.EndpointSpec) -> Json:
    out: Json = {"Mode": _inverse(_ENDPOINT_MODES)[e.mode]}
    if e.ports:
        out["Ports"] = [port_to_docker(p) for p in e.ports]
    return out


def port_to_docker(p: pb.PortConfig) -> Json:
    return {
        "Protocol": _inverse(_PROTOCOLS)[p.protocol],
        "TargetPort": p.target_port,
        "PublishedPort": p.published_port,
        "PublishMode": _inverse(_PUBLISH)[p.publish_mode],
    }


def task_spec_to_docker(t: pb.TaskSpec, networks: Iterable[pb.NetworkAttachmentConfig] = ()) -> Json:
    out: Json = {"ContainerSpec": _container_out(t.container)}
    if t.HasField("resources"):
        r = t.resources
        out["Resources"] = {
            "Limits": _drop_zero({"NanoCPUs": r.limits.nano_cpus, "MemoryBytes": r.limits.memory_bytes, "Pids": r.limits.pids}),
            "Reservations": _drop_zero(
                {
                    "NanoCPUs": r.reservations.nano_cpus,
                    "MemoryBytes": r.reservations.memory_bytes,
                    "GenericResources": [
                        {"NamedResourceSpec": {"Kind": g.kind, "Value": g.named_value}}
                        if g.named_value
                        else {"DiscreteResourceSpec": {"Kind": g.kind, "Value": g.discrete_value}}
                        for g in r.reservations.generic
                    ],
                }
            ),
        }
    else:
        out["Resources"] = {"Limits": {}, "Reservations": {}}
    rp = t.restart
    out["RestartPolicy"] = {
        "Condition": _inverse(_RESTART)[rp.condition],
        "Delay": _dur(rp.delay),
        "MaxAttempts": rp.max_attempts,
    }
    if rp.window:
        out["RestartPolicy"]["Window"] = _dur(rp.window)
    pl = t.placement
    out["Placement"] = _drop_zero(
        {
            "Constraints": list(pl.constraints),
            "Preferences": [{"Spread": {"SpreadDescriptor": p.spread}} for p in pl.preferences],
            "MaxReplicas": pl.max_replicas,
            "Platforms": [{"Architecture": x.architecture, "OS": x.os} for x in pl.platforms],
        }
    )
    nets = [{"Target": n.target, **({"Aliases": list(n.aliases)} if n.aliases else {})} for n in networks]
    if nets:
        out["Networks"] = nets
    if t.HasField("log_driver") and t.log_driver.name:
        out["LogDriver"] = {"Name": t.log_driver.name, "Options": dict(t.log_driver.options)}
    out["ForceUpdate"] = t.force_update
    out["Runtime"] = "container"
    return out


def _drop_zero(d: Json) -> Json:
    return {k: v for k, v in d.items() if not is_empty(v)}


def _container_out(c: pb.ContainerSpec) -> Json:
    out: Json = {"Image": c.image}
    out.update(
        _drop_zero(
            {
                "Labels": dict(c.labels),
                "Command": list(c.command),
                "Args": list(c.args),
                "Hostname": c.hostname,
                "Env": list(c.env),
                "Dir": c.dir,
                "User": c.user,
                "Groups": list(c.groups),
                "TTY": c.tty,
                "ReadOnly": c.read_only,
                "StopSignal": c.stop_signal,
                "Hosts": list(c.hosts),
                "Sysctls": dict(c.sysctls),
                "CapabilityAdd": list(c.cap_add),
                "CapabilityDrop": list(c.cap_drop),
                "Ulimits": [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in c.ulimits],
                "Mounts": [_mount_out(m) for m in c.mounts],
                "Secrets": [_ref_out("Secret", r.secret_id, r.secret_name, r.file) for r in c.secrets],
                "Configs": [_ref_out("Config", r.config_id, r.config_name, r.file) for r in c.configs],
            }
        )
    )
    out["Init"] = c.init
    out["StopGracePeriod"] = _dur(c.stop_grace_period)
    if c.has_healthcheck:
        h = c.healthcheck
        out["HealthCheck"] = _drop_zero(
            {
                "Test": list(h.test),
                "Interval": _dur(h.interval),
                "Timeout": _dur(h.timeout),
                "Retries": h.retries,
                "StartPeriod": _dur(h.start_period),
                "StartInterval": _dur(h.start_interval),
            }
        )
    if c.HasField("dns_config"):
        d = c.dns_config
        out["DNSConfig"] = _drop_zero({"Nameservers": list(d.nameservers), "Search": list(d.search), "Options": list(d.options)})
    else:
        out["DNSConfig"] = {}
    out["Isolation"] = "default"
    return out


def _mount_out(m: pb.Mount) -> Json:
    out: Json = {"Type": _inverse(_MOUNTS)[m.type], "Target": m.target}
    if m.source:
        out["Source"] = m.source
    if m.read_only:
        out["ReadOnly"] = True
    vol = _drop_zero(
        {
            "NoCopy": m.volume_nocopy,
            "Labels": dict(m.volume_labels),
            "DriverConfig": _drop_zero({"Name": m.volume_driver, "Options": dict(m.volume_options)}),
        }
    )
    if vol:
        out["VolumeOptions"] = vol
    tmpfs = _drop_zero({"SizeBytes": m.tmpfs_size, "Mode": m.tmpfs_mode})
    if tmpfs:
        out["TmpfsOptions"] = tmpfs
    return out


def _ref_out(kind: str, ref_id: str, name: str, f: pb.FileTarget) -> Json:
    return {"File": {"Name": f.name, "UID": f.uid, "GID": f.gid, "Mode": f.mode}, f"{kind}ID": ref_id, f"{kind}Name": name}


# ---------------------------------------------------------------- objects out


def _version(meta: pb.Meta) -> Json:
    return {"Index": meta.version}


def _cidr(addr: str, prefixes: Mapping[str, int], network_id: str) -> str:
    return f"{addr}/{prefixes[network_id]}" if network_id in prefixes else addr


def service_to_docker(
    svc: pb.Service,
    prefixes: Mapping[str, int] | None = None,
    status: tuple[int, int, int] | None = None,
) -> Json:
    """A service as GET /services/{id} shows it. `prefixes`: network id ->
    subnet prefix length (for VirtualIPs); `status`: (running, desired,
    completed) when the client asked for ServiceStatus."""
    prefixes = prefixes or {}
    out: Json = {
        "ID": svc.id,
        "Version": _version(svc.meta),
        "CreatedAt": timestamp(svc.meta.created_at),
        "UpdatedAt": timestamp(svc.meta.updated_at or svc.meta.created_at),
        "Spec": service_spec_to_docker(svc.spec),
    }
    if svc.HasField("previous_spec"):
        out["PreviousSpec"] = service_spec_to_docker(svc.previous_spec)
    endpoint: Json = {"Spec": endpoint_spec_to_docker(svc.spec.endpoint)}
    if svc.spec.endpoint.ports:
        endpoint["Ports"] = [port_to_docker(p) for p in svc.spec.endpoint.ports]
    if svc.virtual_ips:
        endpoint["VirtualIPs"] = [
            {"NetworkID": v.network_id, "Addr": _cidr(v.addr, prefixes, v.network_id)} for v in svc.virtual_ips
        ]
    out["Endpoint"] = endpoint
    us = svc.update_status
    if us.state in _UPDATE_STATES:
        out["UpdateStatus"] = {
            "State": _UPDATE_STATES[us.state],
            "StartedAt": timestamp(us.started_at),
            "Message": us.message,
        }
        if us.completed_at:
            out["UpdateStatus"]["CompletedAt"] = timestamp(us.completed_at)
    if svc.spec.WhichOneof("mode") in ("replicated_job", "global_job"):
        out["JobStatus"] = {
            "JobIteration": {"Index": svc.job_status.iteration},
            "LastExecution": timestamp(svc.job_status.last_execution),
        }
    if status is not None:
        running, desired, completed = status
        out["ServiceStatus"] = {"RunningTasks": running, "DesiredTasks": desired, "CompletedTasks": completed}
    return out


def task_to_docker(t: pb.Task, prefixes: Mapping[str, int] | None = None) -> Json:
    prefixes = prefixes or {}
    out: Json = {
        "ID": t.id,
        "Version": _version(t.meta),
        "CreatedAt": timestamp(t.meta.created_at),
        "UpdatedAt": timestamp(t.meta.updated_at or t.meta.created_at),
        "Labels": task_labels(t),
        "Spec": task_spec_to_docker(t.spec),
        "ServiceID": t.service_id,
        "NodeID": t.node_id,
        "Status": {
            "Timestamp": timestamp(t.status.timestamp),
            "State": task_state_name(t.status.state),
            "Message": t.status.message,
            "ContainerStatus": {"ContainerID": t.status.container_id, "ExitCode": t.status.exit_code},
            "PortStatus": {},
        },
        "DesiredState": task_state_name(t.desired_state),
    }
    if t.slot:
        out["Slot"] = t.slot
    if t.status.err:
        out["Status"]["Err"] = t.status.err
    if t.networks:
        out["NetworksAttachments"] = [
            {"Network": {"ID": a.network_id}, "Addresses": [_cidr(a.addr, prefixes, a.network_id)] if a.addr else []}
            for a in t.networks
        ]
    if t.job_iteration:
        out["JobIteration"] = {"Index": t.job_iteration}
    return out


def task_state_name(state: int) -> str:
    return str(pb.TaskState.Name(state)).lower()


def node_to_docker(n: pb.Node) -> Json:
    d = n.description
    out: Json = {
        "ID": n.id,
        "Version": _version(n.meta),
        "CreatedAt": timestamp(n.meta.created_at),
        "UpdatedAt": timestamp(n.meta.updated_at or n.meta.created_at),
        "Spec": {
            "Labels": dict(n.spec.labels),
            "Role": _ROLES[n.spec.desired_role],
            "Availability": _AVAILABILITY[n.spec.availability],
        },
        "Description": {
            "Hostname": d.hostname,
            "Platform": {"Architecture": d.arch, "OS": d.os},
            "Resources": {"NanoCPUs": d.resources.nano_cpus, "MemoryBytes": d.resources.memory_bytes},
            "Engine": {"EngineVersion": d.engine_version, "Labels": dict(d.engine_labels)},
        },
        "Status": {"State": _NODE_STATES[n.status.state], "Message": n.status.message, "Addr": n.status.addr},
    }
    if n.role == pb.NodeSpec.MANAGER:
        ms = n.manager_status
        out["ManagerStatus"] = {"Leader": ms.leader, "Reachability": _REACH[ms.reachability], "Addr": ms.raft_addr}
    return out


def network_to_docker(n: pb.Network) -> Json:
    subnet = n.subnet or n.spec.subnet
    gateway = n.gateway or n.spec.gateway
    ipam_config = [_drop_zero({"Subnet": subnet, "Gateway": gateway})] if subnet else []
    options = {"com.docker.network.driver.overlay.vxlanid_list": str(n.vni)} if n.vni else {}
    return {
        "Name": n.spec.name,
        "Id": n.id,
        "Created": timestamp(n.meta.created_at),
        "Scope": "swarm",
        "Driver": n.spec.driver or "overlay",
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None, "Config": ipam_config},
        "Internal": False,
        "Attachable": n.spec.attachable,
        "Ingress": n.spec.ingress,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": {},
        "Options": options,
        "Labels": dict(n.spec.labels),
    }


def network_spec_from_docker(d: Any) -> pb.NetworkSpec:
    """A POST /networks/create body as swarmlet's spec: overlay networks only."""
    d = _object(d, "NetworkCreate")
    d = check_fields(
        d,
        "NetworkCreate",
        ("Name", "Driver", "Labels", "Attachable", "IPAM", "CheckDuplicate"),
        {"Scope": ("swarm",)},
    )
    driver = _str(d.get("Driver"), "Driver") or "overlay"
    if driver != "overlay":
        raise errors.Invalid(f"Driver: swarmlet serves overlay networks only, not {driver!r}")
    spec = pb.NetworkSpec(name=_str(d.get("Name"), "Name"), driver=driver, attachable=bool(d.get("Attachable")))
    spec.labels.update(_str_map(d.get("Labels"), "Labels"))
    ipam = _object(d.get("IPAM"), "IPAM")
    ipam = check_fields(ipam, "IPAM", ("Config",), {"Driver": ("default",)})
    configs = _list(ipam.get("Config"), "IPAM.Config")
    if len(configs) > 1:
        raise errors.Invalid("IPAM.Config: swarmlet takes one subnet per network")
    for c in configs:
        c = _object(c, "IPAM.Config[0]")
        c = check_fields(c, "IPAM.Config[0]", ("Subnet", "Gateway"))
        spec.subnet = _str(c.get("Subnet"), "IPAM.Config[0].Subnet")
        spec.gateway = _str(c.get("Gateway"), "IPAM.Config[0].Gateway")
    return spec


# ---------------------------------------------------------------- filters


def parse_filters(text: str | None) -> dict[str, list[str]]:
    """Docker's `filters` query parameter: {"name": {"web": true}} (the map
    form clients send since API 1.22) or {"name": ["web"]}."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError:
        raise errors.Invalid(f"filters: not JSON: {text!r}") from None
    if not isinstance(raw, dict):
        raise errors.Invalid("filters: expected a JSON object")
    out: dict[str, list[str]] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            out[key] = [k for k, on in value.items() if on]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[key] = list(value)
        else:
            raise errors.Invalid(f"filters: bad value for {key!r}")
    return out


def check_filter_keys(filters: Mapping[str, list[str]], allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    for key in filters:
        if key not in allowed:
            raise errors.Invalid(f"invalid filter '{key}' (swarmlet takes {', '.join(allowed)})")


def labels_match(labels: Mapping[str, str], wanted: list[str]) -> bool:
    """Every `key` or `key=value` of `wanted` holds."""
    for w in wanted:
        key, eq, value = w.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


def any_prefix(value: str, wanted: list[str]) -> bool:
    return not wanted or any(value.startswith(w) for w in wanted)


def service_mode_name(spec: pb.ServiceSpec) -> str:
    return {"replicated": "replicated", "global": "global", "replicated_job": "replicated-job", "global_job": "global-job"}.get(
        spec.WhichOneof("mode") or "replicated", "replicated"
    )


def service_matches(svc: pb.Service, f: Mapping[str, list[str]]) -> bool:
    return (
        any_prefix(svc.id, f.get("id", []))
        and any_prefix(svc.spec.name, f.get("name", []))
        and labels_match(svc.spec.labels, f.get("label", []))
        and (not f.get("mode") or service_mode_name(svc.spec) in f["mode"])
    )


def node_matches(n: pb.Node, f: Mapping[str, list[str]]) -> bool:
    return (
        any_prefix(n.id, f.get("id", []))
        and any_prefix(n.description.hostname, f.get("name", []))
        and (not f.get("role") or _ROLES[n.role] in f["role"])
        # Every node swarmlet knows was admitted: there is no pending state.
        and (not f.get("membership") or "accepted" in f["membership"])
        and labels_match(n.spec.labels, f.get("node.label", []))
        and labels_match(n.description.engine_labels, f.get("label", []))
    )


def task_matches(
    t: pb.Task,
    f: Mapping[str, list[str]],
    service_ids: set[str] | None,
    node_ids: set[str] | None,
    task_name: Callable[[pb.Task], str],
    spec_versions: Mapping[str, int] | None = None,
) -> bool:
    """`service_ids`/`node_ids`: what the service and node filters resolved
    to (None: no such filter). `spec_versions`: service id -> its current
    spec version, for docker's `_up-to-date` filter (the CLI's progress: a
    task made from the service's current spec)."""
    if f.get("_up-to-date") and (spec_versions or {}).get(t.service_id) != t.spec_version:
        return False
    return (
        any_prefix(t.id, f.get("id", []))
        and (not f.get("name") or any(task_name(t).startswith(w) for w in f["name"]))
        and (service_ids is None or t.service_id in service_ids)
        and (node_ids is None or t.node_id in node_ids)
        and (not f.get("desired-state") or task_state_name(t.desired_state) in f["desired-state"])
        and labels_match(task_labels(t), f.get("label", []))
    )


def task_labels(t: pb.Task) -> dict[str, str]:
    """What docker shows as a task's labels: its service's labels and its
    container's (a stack's namespace is on both)."""
    return {**dict(t.service_labels), **dict(t.spec.container.labels)}


def task_name(t: pb.Task) -> str:
    """Docker's task name: service.slot (replicated) or service.node (global)."""
    return f"{t.service_name}.{t.slot if t.slot else t.node_id}.{t.id}"


def network_matches(n: pb.Network, f: Mapping[str, list[str]]) -> bool:
    return (
        any_prefix(n.id, f.get("id", []))
        and (not f.get("name") or any(w in n.spec.name for w in f["name"]))
        and (not f.get("driver") or (n.spec.driver or "overlay") in f["driver"])
        and (not f.get("scope") or "swarm" in f["scope"])
        and (not f.get("type") or "custom" in f["type"])
        and labels_match(n.spec.labels, f.get("label", []))
    )


def resolve_refs(table: Mapping[str, Any], refs: list[str] | None, name_of: Callable[[Any], str]) -> set[str] | None:
    """The ids a filter's values name (id, name or unique id prefix, as
    swarmlet's lookups); a value naming nothing matches nothing. None when
    there is no such filter."""
    if refs is None:
        return None
    out: set[str] = set()
    for ref in refs:
        try:
            out.add(lookup.resolve(table, ref, "object", name_of).id)
        except errors.SwarmletError:
            continue
    return out


def resolve_one(table: Mapping[str, T], ref: str, what: str) -> T:
    """An object by exact id or unique id prefix."""
    return lookup.resolve(table, ref, what, lambda _o: "")


def subnet_prefixes(networks: Iterable[pb.Network]) -> dict[str, int]:
    """Network id -> its subnet's prefix length (docker shows addresses as CIDR)."""
    out: dict[str, int] = {}
    for n in networks:
        subnet = n.subnet or n.spec.subnet
        if "/" in subnet:
            out[n.id] = int(subnet.rsplit("/", 1)[1])
    return out


def node_update_from_docker(node: pb.Node, d: Any) -> cpb.UpdateNodeRequest:
    """A POST /nodes/{id}/update body (the whole new NodeSpec) as the changes
    swarmlet's node update makes: availability and labels. A role change is
    refused (swarmlet node promote/demote does it)."""
    d = _object(d, "NodeSpec")
    d = check_fields(d, "NodeSpec", ("Labels", "Role", "Availability", "Name"))
    role = _choice(d.get("Role"), _inverse(_ROLES), "NodeSpec.Role", node.spec.desired_role)
    if role != node.spec.desired_role:
        raise errors.Invalid("NodeSpec.Role: changing a node's role is not served here: use `swarmlet node promote/demote`")
    req = cpb.UpdateNodeRequest(ref=node.id)
    availability = _choice(d.get("Availability"), _inverse(_AVAILABILITY), "NodeSpec.Availability", node.spec.availability)
    if availability != node.spec.availability:
        req.set_availability = True
        req.availability = availability
    labels = _str_map(d.get("Labels"), "NodeSpec.Labels")
    for k, v in labels.items():
        if node.spec.labels.get(k) != v:
            req.label_add[k] = v
    req.label_rm.extend(k for k in node.spec.labels if k not in labels)
    return req


# ---------------------------------------------------------------- secrets and configs


def secret_or_config_to_docker(obj: pb.Secret | pb.Config) -> Json:
    """A secret or config as docker shows it. A secret's data never leaves
    (the control API cleared it already); a config's does, base64 as docker's."""
    spec: Json = {"Name": obj.spec.name, "Labels": dict(obj.spec.labels)}
    if isinstance(obj, pb.Config) and obj.spec.data:
        spec["Data"] = base64.b64encode(obj.spec.data).decode()
    return {
        "ID": obj.id,
        "Version": _version(obj.meta),
        "CreatedAt": timestamp(obj.meta.created_at),
        "UpdatedAt": timestamp(obj.meta.updated_at or obj.meta.created_at),
        "Spec": spec,
    }


def secret_or_config_spec_from_docker(d: Any, kind: str) -> tuple[str, dict[str, str], bytes]:
    """(name, labels, data) of a POST /secrets/create or /configs/create body.
    Drivers and templating are refused."""
    d = _object(d, f"{kind}Spec")
    d = check_fields(d, f"{kind}Spec", ("Name", "Labels", "Data"))
    try:
        data = base64.b64decode(_str(d.get("Data"), "Data"), validate=True)
    except ValueError:
        raise errors.Invalid("Data: expected base64") from None
    return _str(d.get("Name"), "Name"), _str_map(d.get("Labels"), "Labels"), data


def named_matches(obj: pb.Secret | pb.Config, f: Mapping[str, list[str]]) -> bool:
    return (
        any_prefix(obj.id, f.get("id", []))
        and (not f.get("name") or any(obj.spec.name.startswith(w) for w in f["name"]))
        and (not f.get("names") or obj.spec.name in f["names"])
        and labels_match(obj.spec.labels, f.get("label", []))
    )


# ---------------------------------------------------------------- events


def event_to_docker(e: Any) -> Json:
    """A cluster event (events_pb2.Event) as docker's events message, scope
    "swarm": the object's name and what changed as the actor's attributes."""
    attributes = {"name": e.name, **dict(e.attributes)}
    return {
        "Type": e.type,
        "Action": e.action,
        "Actor": {"ID": e.id, "Attributes": attributes},
        "scope": "swarm",
        "time": int(e.time),
        "timeNano": _ns(e.time),
    }


def keep_swarmlet_only(new: pb.ServiceSpec, current: pb.ServiceSpec) -> None:
    """Carry into `new` (a docker client's whole spec for an update) what
    docker's ServiceSpec has no field for, from the service's `current`
    spec: the image pull policy and canary settings. Otherwise an update
    through docker's API would silently reset them."""
    new.task.container.pull = current.task.container.pull
    for field in ("update", "rollback"):
        if current.HasField(field):
            getattr(new, field).canary = getattr(current, field).canary
            getattr(new, field).auto_promote = getattr(current, field).auto_promote
