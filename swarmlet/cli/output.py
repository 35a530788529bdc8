"""Formatting for the command line: tables, JSON, durations, sizes, task listings.

Pure functions (no I/O, the clock is a parameter) so the output the user sees is
unit-tested without a daemon.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb

# ---- JSON ----------------------------------------------------------------------


def message_to_dict(msg: Message) -> dict[str, Any]:
    """A protobuf message as plain JSON data. Field names stay as in the .proto
    (what scripts read in the docs), fields at their default value are kept so a
    worker's role or a service scaled to 0 is visible rather than absent, and 64-bit
    integers are numbers (not proto3-JSON strings) while they fit a double."""
    return json_format.MessageToDict(
        msg,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )


def to_jsonable(obj: Any) -> Any:
    if isinstance(obj, Message):
        return message_to_dict(obj)
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def to_json(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), indent=4, sort_keys=False, ensure_ascii=False)


# ---- tables --------------------------------------------------------------------

# Docker's tables come from a tabwriter with a minimum cell width of 10 and padding 3;
# matching it keeps output familiar and column positions stable across small values.
_MIN_WIDTH = 10
_PADDING = 3


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    all_rows = [list(headers)] + [[str(c) for c in r] for r in rows]
    ncols = len(headers)
    widths = [0] * ncols
    for r in all_rows:
        for i in range(ncols):
            widths[i] = max(widths[i], len(r[i]) if i < len(r) else 0)
    lines = []
    for r in all_rows:
        cells = []
        for i in range(ncols):
            text = r[i] if i < len(r) else ""
            if i < ncols - 1:
                cells.append(text.ljust(max(widths[i] + _PADDING, _MIN_WIDTH)))
            else:
                cells.append(text)
        lines.append("".join(cells).rstrip())
    return "\n".join(lines)


# ---- durations, times, sizes -----------------------------------------------------


def human_duration(seconds: float) -> str:
    """Approximate wording like Docker's ("5 seconds", "About a minute", "3 hours")."""
    s = max(0.0, seconds)
    if s < 1:
        return "Less than a second"
    if int(s) == 1:
        return "1 second"
    if s < 60:
        return f"{int(s)} seconds"
    minutes = int(s // 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(round(s / 3600))
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def time_ago(timestamp: float, now: float) -> str:
    if timestamp <= 0:
        return ""
    return f"{human_duration(now - timestamp)} ago"


def format_duration(seconds: float) -> str:
    """Seconds -> Go-style duration ("5s", "1m30s", "500ms", "2h0m0s" becomes "2h")."""
    if seconds <= 0:
        return "0s"
    d = Decimal(repr(seconds))
    if d < 1:
        ms = d * 1000
        if ms >= 1:
            return f"{_trim(ms)}ms"
        return f"{_trim(d * 1_000_000)}us"
    hours = int(d // 3600)
    d -= hours * 3600
    minutes = int(d // 60)
    d -= minutes * 60
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if d or not out:
        out += f"{_trim(d)}s"
    return out


def _trim(d: Decimal) -> str:
    text = format(d.quantize(Decimal("0.001")).normalize(), "f")
    return text


def format_bytes(n: int) -> str:
    """Binary units with up to 4 significant digits: 67108864 -> "64MiB"."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    value = float(n)
    i = 0
    while value >= 1024 and i < len(units) - 1:
        value /= 1024
        i += 1
    return f"{value:.4g}{units[i]}"


def format_nano_cpus(n: int) -> str:
    text = format((Decimal(n) / Decimal(1_000_000_000)).normalize(), "f")
    return text


def format_timestamp(ts: float) -> str:
    """Unix seconds -> RFC 3339 UTC, the way `inspect --pretty` shows times."""
    import datetime

    if ts <= 0:
        return ""
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ---- enums -----------------------------------------------------------------------


def task_state_name(state: int) -> str:
    """TaskState value -> lower-case name ("running"); unknown values stay numeric."""
    try:
        return pb.TaskState.Name(state).lower()
    except ValueError:
        return str(state)


def title(text: str) -> str:
    return text[:1].upper() + text[1:].lower() if text else text


def node_state(node: pb.Node) -> str:
    return title(pb.NodeStatus.State.Name(node.status.state))


def node_availability(node: pb.Node) -> str:
    return title(pb.NodeSpec.Availability.Name(node.spec.availability))


def node_role(node: pb.Node) -> str:
    return pb.NodeSpec.Role.Name(node.role).lower()


def manager_status(node: pb.Node, leader_id: str) -> str:
    """Docker's MANAGER STATUS column: empty for workers, Leader, else Reachable /
    Unreachable (approximated by whether the node reports READY)."""
    if node.role != pb.NodeSpec.MANAGER:
        return ""
    if (leader_id and node.id == leader_id) or node.manager_status.leader:
        return "Leader"
    r = node.manager_status.reachability
    if r != pb.ManagerStatus.UNKNOWN:
        # The answering manager's Raft connection to that member (as swarm).
        return "Reachable" if r == pb.ManagerStatus.REACHABLE else "Unreachable"
    return "Reachable" if node.status.state == pb.NodeStatus.READY else "Unreachable"


def service_mode(service: pb.Service) -> str:
    """As docker's --mode names it: replicated, global, replicated-job, global-job."""
    return {"global": "global", "replicated_job": "replicated-job", "global_job": "global-job"}.get(
        service.spec.WhichOneof("mode") or "", "replicated"
    )


def replicas_text(s: Any) -> str:
    """`service ls`'s REPLICAS of a ServiceSummary, as docker shows it: jobs
    with their completions, a per-node limit when there is one."""
    svc = s.service
    if svc.spec.WhichOneof("mode") in ("replicated_job", "global_job"):
        return f"{s.running}/{s.desired} ({s.completed}/{s.total} completed)"
    text = f"{s.running}/{s.desired}"
    if svc.spec.task.placement.max_replicas:
        text += f" (max {svc.spec.task.placement.max_replicas} per node)"
    return text


def trunc_id(ident: str, no_trunc: bool = False) -> str:
    return ident if no_trunc else ident[:12]


def ellipsize(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# ---- listings ----------------------------------------------------------------------


def node_rows(nodes: Sequence[pb.Node], leader_id: str, self_id: str = "") -> list[list[str]]:
    ordered = sorted(nodes, key=lambda n: (n.description.hostname, n.id))
    rows = []
    for n in ordered:
        ident = n.id + (" *" if self_id and n.id == self_id else "")
        rows.append(
            [
                ident,
                n.description.hostname,
                node_state(n),
                node_availability(n),
                manager_status(n, leader_id),
                n.description.engine_version,
            ]
        )
    return rows


NODE_HEADERS = ["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS", "ENGINE VERSION"]
SERVICE_HEADERS = ["ID", "NAME", "MODE", "REPLICAS", "IMAGE"]
TASK_HEADERS = ["ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR"]
NETWORK_HEADERS = ["NETWORK ID", "NAME", "DRIVER", "SCOPE", "SUBNET", "VNI"]


def service_rows(summaries: Sequence[Any]) -> list[list[str]]:
    """Rows for `service ls` from control ServiceSummary messages, sorted by name."""
    ordered = sorted(summaries, key=lambda s: (s.service.spec.name, s.service.id))
    return [
        [
            trunc_id(s.service.id),
            s.service.spec.name,
            service_mode(s.service),
            replicas_text(s),
            s.service.spec.task.container.image,
        ]
        for s in ordered
    ]


def network_rows(nets: list[pb.Network]) -> list[list[str]]:
    return [
        [
            trunc_id(n.id),
            n.spec.name,
            n.spec.driver or "overlay",
            "swarm",
            n.subnet or (f"(error: {n.error})" if n.error else "(allocating)"),
            str(n.vni or ""),
        ]
        for n in nets
    ]


def task_name(task: pb.Task) -> str:
    """name.slot for replicated tasks, name.nodeid for global ones (slot 0), as Docker."""
    suffix = str(task.slot) if task.slot else task.node_id
    return f"{task.service_name}.{suffix}"


def order_tasks(tasks: Iterable[pb.Task]) -> list[tuple[bool, pb.Task]]:
    """Docker's `ps` history order: grouped per service and slot (or node for global
    tasks), newest first within a group. Returns (is_history, task): every task after
    the first of its group is an older attempt, shown with a ' \\_ ' prefix."""

    def group(t: pb.Task) -> tuple[str, str, int, str]:
        return (t.service_name, t.service_id, t.slot, t.node_id if not t.slot else "")

    ordered = sorted(tasks, key=lambda t: (group(t), -t.meta.created_at, -t.meta.version, t.id))
    out: list[tuple[bool, pb.Task]] = []
    prev: tuple[str, str, int, str] | None = None
    for t in ordered:
        g = group(t)
        out.append((g == prev, t))
        prev = g
    return out


def current_state_text(task: pb.Task, now: float) -> str:
    state = title(task_state_name(task.status.state))
    ago = time_ago(task.status.timestamp, now)
    return f"{state} {ago}" if ago else state


def task_rows(
    tasks: Iterable[pb.Task],
    node_names: Mapping[str, str],
    now: float,
    no_trunc: bool = False,
    waiting: Mapping[str, str] | None = None,
) -> list[list[str]]:
    """`waiting`: why tasks wait (ListTasksResponse.waiting), shown in the
    ERROR column in place of the task's own error, as Swarm shows "no
    suitable node (...)" there."""
    rows = []
    for is_history, t in order_tasks(tasks):
        name = task_name(t)
        if not no_trunc and not t.slot:
            # global task names carry a node id: shorten it like the ID column
            name = f"{t.service_name}.{trunc_id(t.node_id)}"
        if is_history:
            name = " \\_ " + name
        # The task's own error first, as Swarm's ERROR column (a rejected
        # task says why it was rejected), then why its slot waits (issue 16:
        # a restart delay, a restart policy that gave up).
        own, why = t.status.err, (waiting or {}).get(t.id, "")
        err = f"{own}; {why}" if own and why and why not in own else (own or why)
        if err:
            err = f'"{err if no_trunc else ellipsize(err, 30)}"'
        rows.append(
            [
                trunc_id(t.id, no_trunc),
                name,
                t.spec.container.image,
                node_names.get(t.node_id, t.node_id) if t.node_id else "",
                title(task_state_name(t.desired_state)),
                current_state_text(t, now),
                err,
            ]
        )
    return rows


# ---- key/value blocks for --pretty -----------------------------------------------------

PrettyItem = tuple[int, str, "str | None"]


def pretty_lines(items: Sequence[PrettyItem]) -> str:
    """(level, key, value) triples -> aligned "Key:  value" lines indented by level;
    value None makes a section header ("Resources:"). Values line up in one column
    so `inspect --pretty` reads like Docker's without relying on tab stops."""
    width = max((lvl + len(k) + 1 for lvl, k, v in items if v is not None), default=0) + 2
    out = []
    for lvl, key, value in items:
        head = " " * lvl + key + ":"
        out.append(head if value is None else (head.ljust(width) + value).rstrip())
    return "\n".join(out)


def filter_tasks(tasks: Iterable[pb.Task], filters: Mapping[str, Sequence[str]], node_names: Mapping[str, str]) -> list[pb.Task]:
    """Apply parsed `ps -f` filters: id prefix, task name prefix (name.slot), node id
    prefix or hostname, desired state name."""

    def keep(t: pb.Task) -> bool:
        for key, values in filters.items():
            if key == "desired-state":
                ok = task_state_name(t.desired_state) in values
            elif key == "id":
                ok = any(t.id.startswith(v) for v in values)
            elif key == "name":
                ok = any(task_name(t).startswith(v) for v in values)
            elif key == "node":
                ok = bool(t.node_id) and any(t.node_id.startswith(v) or node_names.get(t.node_id) == v for v in values)
            else:
                ok = True
            if not ok:
                return False
        return True

    return [t for t in tasks if keep(t)]


def format_task_list(
    tasks: Sequence[pb.Task],
    node_names: Mapping[str, str],
    now: float,
    *,
    fmt: str | None = None,
    quiet: bool = False,
    no_trunc: bool = False,
    waiting: Mapping[str, str] | None = None,
) -> str:
    """`service ps` / `node ps` output: JSON (a ListTasksResponse), ids, or the table."""
    ordered = [t for _, t in order_tasks(tasks)]
    if fmt == "json":
        used = {t.node_id for t in ordered if t.node_id}
        names = {k: v for k, v in node_names.items() if k in used}
        ids = {t.id for t in ordered}
        why = {k: v for k, v in (waiting or {}).items() if k in ids}
        return to_json(cpb.ListTasksResponse(tasks=ordered, node_names=names, waiting=why))
    if quiet:
        return "\n".join(t.id for t in ordered)
    return format_table(TASK_HEADERS, task_rows(ordered, node_names, now, no_trunc, waiting))


# ---- inspect --pretty --------------------------------------------------------------------


def format_node_pretty(node: pb.Node, leader_id: str = "", now: float = 0.0) -> str:
    items: list[PrettyItem] = [
        (0, "ID", node.id),
        (0, "Hostname", node.description.hostname),
        (0, "Joined at", format_timestamp(node.meta.created_at)),
        (0, "Status", None),
        (1, "State", node_state(node)),
    ]
    if node.status.message:
        items.append((1, "Message", node.status.message))
    items += [
        (1, "Availability", node_availability(node)),
        (1, "Address", node.status.addr),
        (0, "Role", node_role(node)),
    ]
    if node.role == pb.NodeSpec.MANAGER:
        items += [
            (0, "Manager Status", None),
            (1, "Raft Address", node.manager_status.raft_addr),
            (1, "API Address", node.manager_status.api_addr),
            (1, "Raft Status", manager_status(node, leader_id) or "Unknown"),
            (1, "Leader", "Yes" if leader_id and node.id == leader_id else "No"),
        ]
    if node.spec.labels:
        items.append((0, "Labels", None))
        items += [(1, k, v) for k, v in sorted(node.spec.labels.items())]
    items += [
        (0, "Platform", None),
        (1, "Operating System", node.description.os),
        (1, "Architecture", node.description.arch),
        (0, "Resources", None),
        (1, "CPUs", format_nano_cpus(node.description.resources.nano_cpus)),
        (1, "Memory", format_bytes(node.description.resources.memory_bytes)),
        (0, "Engine Version", node.description.engine_version),
    ]
    items += certificate_items(node, now)
    return pretty_lines(items)


def _resources_items(label: str, r: pb.Resources) -> list[PrettyItem]:
    if not r.nano_cpus and not r.memory_bytes:
        return []
    items: list[PrettyItem] = [(1, label, None)]
    if r.nano_cpus:
        items.append((2, "CPU", format_nano_cpus(r.nano_cpus)))
    if r.memory_bytes:
        items.append((2, "Memory", format_bytes(r.memory_bytes)))
    return items


def format_service_pretty(service: pb.Service, stuck: str = "") -> str:
    """`stuck`: why the service cannot converge (ServiceProgress), shown
    when there is a reason."""
    spec = service.spec
    task = spec.task
    c = task.container
    items: list[PrettyItem] = [
        (0, "ID", service.id),
        (0, "Name", spec.name),
    ]
    if spec.labels:
        items.append((0, "Labels", None))
        items += [(1, k, v) for k, v in sorted(spec.labels.items())]
    items.append((0, "Service Mode", title(service_mode(service))))
    if service_mode(service) == "replicated":
        items.append((1, "Replicas", str(spec.replicated.replicas)))
    items += _job_items(service)
    items += [
        (0, "Created at", format_timestamp(service.meta.created_at)),
        (0, "Updated at", format_timestamp(service.meta.updated_at)),
        (0, "Spec version", str(service.spec_version)),
    ]
    if stuck:
        items.append((0, "Stuck", stuck))
    if task.placement.constraints or task.placement.preferences or task.placement.max_replicas:
        items.append((0, "Placement", None))
    if task.placement.constraints:
        items.append((1, "Constraints", "[" + ", ".join(task.placement.constraints) + "]"))
    items += _placement_items(task.placement)
    r = task.restart
    items += [
        (0, "RestartPolicy", None),
        (1, "Condition", pb.RestartPolicy.Condition.Name(r.condition).lower().replace("_", "-")),
        (1, "Delay", format_duration(r.delay)),
        (1, "Max attempts", str(r.max_attempts)),
    ]
    if r.window:
        items.append((1, "Window", format_duration(r.window)))
    items += [(0, "ContainerSpec", None), (1, "Image", c.image)]
    if c.command:
        items.append((1, "Command", " ".join(c.command)))
    if c.args:
        items.append((1, "Args", " ".join(c.args)))
    if c.env:
        items.append((1, "Env", " ".join(c.env)))
    if c.labels:
        items.append((1, "Labels", None))
        items += [(2, k, v) for k, v in sorted(c.labels.items())]
    items.append((1, "Stop grace period", format_duration(c.stop_grace_period or 10.0)))
    items += _container_option_items(task)
    if c.has_healthcheck:
        h = c.healthcheck
        items.append((1, "Healthcheck", None))
        test = list(h.test)
        if test[:1] == ["NONE"]:
            items.append((2, "Disabled", "true"))
        else:
            if test:
                items.append((2, "Test", " ".join(test[1:]) if test[0] in ("CMD-SHELL", "CMD") else " ".join(test)))
            for key, secs in (
                ("Interval", h.interval),
                ("Timeout", h.timeout),
                ("Start period", h.start_period),
                ("Start interval", h.start_interval),
            ):
                if secs:
                    items.append((2, key, format_duration(secs)))
            if h.retries:
                items.append((2, "Retries", str(h.retries)))
    items += storage_items(c)
    res = _resources_items("Reservations", task.resources.reservations) + _resources_items("Limits", task.resources.limits)
    res += _resource_option_items(task.resources)
    if res:
        items.append((0, "Resources", None))
        items += res
    items += _update_items(service)
    items += _endpoint_items(spec.endpoint)
    return pretty_lines(items)


# ---- service options (issue 11) ----


def _job_items(service: pb.Service) -> list[PrettyItem]:
    spec = service.spec
    if spec.WhichOneof("mode") not in ("replicated_job", "global_job"):
        return []
    items: list[PrettyItem] = []
    if spec.WhichOneof("mode") == "replicated_job":
        items += [
            (1, "Max Concurrent", str(spec.replicated_job.max_concurrent)),
            (1, "Total Completions", str(spec.replicated_job.total_completions)),
        ]
    items.append((1, "Job Iteration", str(service.job_status.iteration)))
    if service.job_status.last_execution:
        items.append((1, "Last Execution", format_timestamp(service.job_status.last_execution)))
    return items


def _placement_items(p: pb.Placement) -> list[PrettyItem]:
    items: list[PrettyItem] = []
    if p.preferences:
        items.append((1, "Preferences", "[" + ", ".join(f"spread={x.spread}" for x in p.preferences) + "]"))
    if p.max_replicas:
        items.append((1, "Max Replicas Per Node", str(p.max_replicas)))
    return items


def _container_option_items(task: pb.TaskSpec) -> list[PrettyItem]:
    c = task.container
    items: list[PrettyItem] = []
    for key, value in (
        ("User", c.user),
        ("Dir", c.dir),
        ("Hostname", c.hostname),
        ("Stop signal", c.stop_signal),
    ):
        if value:
            items.append((1, key, value))
    for key, on in (("Init", c.init), ("Read only", c.read_only), ("TTY", c.tty)):
        if on:
            items.append((1, key, "true"))
    for key, values in (
        ("Capability add", c.cap_add),
        ("Capability drop", c.cap_drop),
        ("Groups", c.groups),
        ("Hosts", c.hosts),
    ):
        if values:
            items.append((1, key, ", ".join(values)))
    if c.sysctls:
        items.append((1, "Sysctls", None))
        items += [(2, k, v) for k, v in sorted(c.sysctls.items())]
    if c.ulimits:
        items.append((1, "Ulimits", None))
        items += [(2, u.name, f"{u.soft}:{u.hard}") for u in c.ulimits]
    d = c.dns_config
    if d.nameservers or d.search or d.options:
        items.append((1, "DNS", None))
        for key, values in (("Nameservers", d.nameservers), ("Search", d.search), ("Options", d.options)):
            if values:
                items.append((2, key, ", ".join(values)))
    if task.log_driver.name:
        items.append((1, "Log driver", task.log_driver.name))
        items += [(2, k, v) for k, v in sorted(task.log_driver.options.items())]
    return items


def _resource_option_items(r: pb.ResourceRequirements) -> list[PrettyItem]:
    items: list[PrettyItem] = []
    if r.reservations.generic:
        items.append((1, "Generic resources", ", ".join(f"{g.kind}={g.discrete_value}" for g in r.reservations.generic)))
    if r.limits.pids:
        items.append((1, "Pids limit", str(r.limits.pids)))
    return items


def _endpoint_items(ep: pb.EndpointSpec) -> list[PrettyItem]:
    items: list[PrettyItem] = [(0, "Endpoint Mode", pb.EndpointSpec.Mode.Name(ep.mode).lower())]
    if ep.ports:
        items.append((0, "Ports", None))
        for p in ep.ports:
            items += [
                (1, "PublishedPort", str(p.published_port)),
                (2, "Protocol", pb.PortConfig.Protocol.Name(p.protocol).lower()),
                (2, "TargetPort", str(p.target_port)),
                (2, "PublishMode", pb.PortConfig.PublishMode.Name(p.publish_mode).lower()),
            ]
    return items


def _update_items(service: pb.Service) -> list[PrettyItem]:
    """UpdateStatus and the update/rollback policies, as Swarm shows them."""
    items: list[PrettyItem] = []
    s = service.update_status
    if s.state:
        items.append((0, "UpdateStatus", None))
        items.append((1, "State", pb.UpdateStatus.State.Name(s.state).lower()))
        if s.started_at:
            items.append((1, "Started", format_timestamp(s.started_at)))
        if s.completed_at:
            items.append((1, "Completed", format_timestamp(s.completed_at)))
        if s.message:
            items.append((1, "Message", s.message))
    for label, name in (("UpdateConfig", "update"), ("RollbackConfig", "rollback")):
        if not service.spec.HasField(name):
            continue
        c = getattr(service.spec, name)
        items.append((0, label, None))
        items.append((1, "Parallelism", str(c.parallelism)))
        if c.delay:
            items.append((1, "Delay", format_duration(c.delay)))
        items.append((1, "On failure", pb.UpdateConfig.FailureAction.Name(c.failure_action).lower()))
        items.append((1, "Monitoring Period", format_duration(c.monitor)))
        items.append((1, "Max failure ratio", f"{c.max_failure_ratio:g}"))
        items.append((1, "Update order", pb.UpdateConfig.Order.Name(c.order).lower().replace("_", "-")))
        if name == "update" and c.canary:
            items.append((1, "Canaries", str(c.canary)))
            items.append((1, "Auto promote", "true" if c.auto_promote else "false"))
    return items


# ---- volumes, secrets and configs (issue 10) -------------------------------------------

_MOUNT_TYPES = {pb.Mount.VOLUME: "volume", pb.Mount.BIND: "bind", pb.Mount.TMPFS: "tmpfs"}


def storage_items(c: pb.ContainerSpec) -> list[PrettyItem]:
    """Mounts, secrets and configs of a container spec for `inspect --pretty`
    (names and files only: a spec never holds secret data)."""
    items: list[PrettyItem] = []
    if c.mounts:
        items.append((1, "Mounts", None))
        for m in c.mounts:
            kind = _MOUNT_TYPES.get(m.type, str(m.type))
            text = f"{kind} {m.source + ' ' if m.source else ''}-> {m.target}{' (read-only)' if m.read_only else ''}"
            extra = []
            if m.volume_driver:
                extra.append(f"driver {m.volume_driver}")
            extra += [f"{k}={v}" for k, v in sorted(m.volume_options.items())]
            if m.volume_nocopy:
                extra.append("nocopy")
            if m.tmpfs_size:
                extra.append(f"size {format_bytes(m.tmpfs_size)}")
            if m.tmpfs_mode:
                extra.append(f"mode {m.tmpfs_mode:o}")
            items.append((2, "Mount", text + (f" [{', '.join(extra)}]" if extra else "")))
    for label, refs in (("Secrets", list(c.secrets)), ("Configs", list(c.configs))):
        if not refs:
            continue
        items.append((1, label, None))
        for r in refs:
            name = r.secret_name if isinstance(r, pb.SecretReference) else r.config_name
            f = r.file
            target = f.name if f.name.startswith("/") or label == "Configs" else f"/run/secrets/{f.name}"
            items.append((2, name, f"{target} (uid {f.uid or 0}, gid {f.gid or 0}, mode {f.mode or 0o444:04o})"))
    return items


# ---- certificates, the root CA, cluster settings (issue 13, part A) --------------------


def _pem_text(value: Any) -> Any:
    """A PEM field as JSON shows it: its text, not base64 of its bytes."""
    import base64

    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            return value
        if raw.startswith(b"-----BEGIN"):
            return raw.decode()
    return value


def pem_fields_as_text(data: Any) -> Any:
    """JSON data of a message with every *_pem field shown as PEM text."""
    if isinstance(data, dict):
        return {k: (_pem_text(v) if k.endswith("_pem") else pem_fields_as_text(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [pem_fields_as_text(v) for v in data]
    return data


def pem_json(msg: Message) -> str:
    return json.dumps(pem_fields_as_text(message_to_dict(msg)), indent=4, ensure_ascii=False)


def cert_expiry_text(not_after: float, now: float) -> str:
    """ "2026-08-01T10:00:00Z (in 89 days)", or "... (expired 3 hours ago)";
    without `now`, only the time."""
    if not_after <= 0:
        return ""
    if now <= 0:
        return format_timestamp(not_after)
    left = not_after - now
    rel = f"in {human_duration(left).lower()}" if left > 0 else f"expired {human_duration(-left).lower()} ago"
    return f"{format_timestamp(not_after)} ({rel})"


def certificate_items(node: pb.Node, now: float) -> list[PrettyItem]:
    c = node.certificate
    if not c.serial:
        return []
    return [
        (0, "TLS Info", None),
        (1, "Certificate Expiry", cert_expiry_text(c.not_after, now)),
        (1, "Certificate Serial", c.serial),
        (1, "Issuer Key ID", c.issuer_key_id),
    ]


def format_cluster_pretty(cluster: pb.Cluster, now: float) -> str:
    """`cluster inspect --pretty`: the settings as `docker info` groups them."""
    s = cluster.spec
    root = cluster.root_ca
    items: list[PrettyItem] = [
        (0, "ID", cluster.id),
        (0, "Created at", format_timestamp(cluster.meta.created_at)),
        (0, "Updated at", format_timestamp(cluster.meta.updated_at)),
        (0, "Dispatcher", None),
        (1, "Heartbeat Period", format_duration(s.heartbeat_period)),
        (1, "Node Down After", format_duration(s.node_down_after)),
        (0, "Orchestration", None),
        (1, "Task History Retention Limit", str(s.task_history_limit)),
        (0, "CA Configuration", None),
        (1, "Expiry Duration", format_duration(s.node_cert_expiry or 90 * 86400.0)),
        (1, "Root CA Digest", f"sha256:{root.digest}"),
        (1, "Root Rotation In Progress", "yes" if root.HasField("rotation") else "no"),
    ]
    if root.HasField("rotation"):
        items += [
            (2, "New Root CA Digest", f"sha256:{root.rotation.digest}"),
            (2, "Started", f"{format_timestamp(root.rotation.started_at)} ({time_ago(root.rotation.started_at, now)})"),
        ]
    if cluster.revoked_certs:
        items.append((1, "Revoked Certificates", str(len(cluster.revoked_certs))))
    items += [
        (0, "Default Address Pool", ", ".join(s.default_address_pool) or "10.0.0.0/8"),
        (0, "Subnet Size", str(s.default_subnet_size or 24)),
    ]
    return pretty_lines(items)


def rotation_progress_text(status: cpb.RootCAStatus) -> str:
    """One line of `ca --rotate` progress: how many nodes hold a certificate
    from the new root, and which do not yet (with their state, so a down node
    holding the rotation back is visible)."""
    line = f"rotating the root CA: {status.nodes_renewed}/{status.nodes} nodes hold a certificate from the new root"
    if status.pending:
        names = [f"{p.hostname or p.node_id[:12]} ({p.state})" for p in status.pending[:8]]
        more = len(status.pending) - len(names)
        line += "; waiting for " + ", ".join(names) + (f" and {more} more" if more > 0 else "")
    return line


# ---- security (issue 13) ----


def unlock_message(key: str) -> str:
    """How `init --autolock`, `unlock-key` and `cluster update --autolock`
    show the unlock key (as docker does)."""
    return (
        "To unlock a swarm manager after it restarts, run the `swarmlet unlock` command and provide the following key:\n\n"
        f"    {key}\n\n"
        "Remember to store this key in a password manager, since without it you will not be able to restart the manager.\n"
    )
