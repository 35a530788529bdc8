"""Flags shared by several commands, each declared once.

Single flags are `Annotated` aliases (FormatOpt, IdsOpt, ...). Groups of flags
are dataclasses whose fields are the flags; `@flags(name=Group)` adds a
group's flags to a command and hands the command one instance, so `service
create` and `service update` declare the --update-*/--rollback-* and
--reserve-*/--restart-*/--health-* flags nowhere but here.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar, get_type_hints

import typer

from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.parse import parse_duration

T = TypeVar("T")
V = TypeVar("V")
R = TypeVar("R")

# ---- single flags ------------------------------------------------------------------

FormatOpt = Annotated[str | None, typer.Option("--format", metavar="json", help="'json' for machine-readable output.")]
IdsOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only display IDs.")]
PrettyOpt = Annotated[bool, typer.Option("--pretty", help="Human-readable output.")]
StopGraceOpt = Annotated[
    str | None,
    typer.Option("--stop-grace-period", metavar="DURATION", help="Time to wait before force killing a container (default 10s)."),
]

# Passed on as typed: the daemon resolves an interface name (node/addresses.py)
# on its own host and in its own network namespace, which need not be the CLI's.
AdvertiseAddrOpt = Annotated[
    str | None,
    typer.Option(
        "--advertise-addr",
        metavar="IP",
        help="IP (or interface) other nodes reach this one at (default: the first non-loopback IPv4 address).",
    ),
]


def check_format(fmt: str | None) -> None:
    if fmt not in (None, "json"):
        raise typer.BadParameter(f"unsupported format {fmt!r}: only 'json' is supported", param_hint="--format")


def check_pretty(pretty: bool, fmt: str | None) -> None:
    check_format(fmt)
    if pretty and fmt:
        raise typer.BadParameter("--pretty and --format cannot be combined", param_hint="--pretty")


def parsed(parser: Callable[[V], T], value: V, hint: str) -> T:
    """Run a parse.py parser; its ValueError becomes a usage error on `hint`."""
    try:
        return parser(value)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint=hint) from None


def optional(parser: Callable[[str], T], value: str | None, hint: str) -> T | None:
    return None if value is None else parsed(parser, value, hint)


# ---- groups --------------------------------------------------------------------------


def flags(**groups: type[Any]) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Add the flags of each group (a dataclass whose fields are Annotated typer
    options) to a command, in place of the command's parameter of the same
    name, which receives one instance of the group. Typer reads the command's
    signature, so the wrapper advertises the command's own parameters followed
    by the groups' flags, in the order given here (the order of --help)."""

    def decorate(fn: Callable[..., R]) -> Callable[..., R]:
        sig = inspect.signature(fn, eval_str=True)
        fields: dict[str, tuple[dataclasses.Field[Any], ...]] = {}
        added: list[inspect.Parameter] = []
        for param, group in groups.items():
            if param not in sig.parameters:
                raise TypeError(f"{fn.__name__} has no parameter {param!r} for {group.__name__}")
            fields[param] = dataclasses.fields(group)
            hints = get_type_hints(group, include_extras=True)
            added += [
                inspect.Parameter(
                    f"{param}__{f.name}", inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name]
                )
                for f in fields[param]
            ]
        # Keyword-only: typer passes everything by name, and it frees the order.
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in sig.parameters.values() if p.name not in groups]

        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> R:
            for param, group in groups.items():
                kwargs[param] = group(**{f.name: kwargs.pop(f"{param}__{f.name}") for f in fields[param]})
            return fn(*args, **kwargs)

        params = own + added
        command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params} | {"return": sig.return_annotation}
        return command

    return decorate


def given(group: Any) -> bool:
    """Whether any flag of a group was given: a field differs from its default
    (None, or False for an on/off flag; --update-parallelism 0 and
    --no-update-auto-promote are given)."""
    return any(getattr(group, f.name) != f.default for f in dataclasses.fields(group))


@dataclasses.dataclass(frozen=True)
class WaitFlags:
    """How a command that changes a service follows its progress."""

    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Exit immediately instead of waiting for the service to converge.")
    ] = False
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Suppress progress output.")] = False
    timeout: Annotated[
        str | None,
        typer.Option("--timeout", hidden=True, metavar="DURATION", help="Give up waiting for convergence after DURATION."),
    ] = None

    def limit(self) -> float | None:
        """--timeout in seconds; checked before anything is sent."""
        return optional(parse_duration, self.timeout, "--timeout")


@dataclasses.dataclass(frozen=True)
class TaskListFlags:
    """`service ps` and `node ps`."""

    filters: Annotated[
        list[str] | None,
        typer.Option("--filter", "-f", metavar="KEY=VALUE", help="desired-state=, id=, name=, node=; repeatable."),
    ] = None
    no_trunc: Annotated[bool, typer.Option("--no-trunc", help="Do not truncate output.")] = False
    quiet: IdsOpt = False
    fmt: FormatOpt = None


@dataclasses.dataclass(frozen=True)
class ResourceFlags:
    reserve_cpu: Annotated[str | None, typer.Option("--reserve-cpu", metavar="CPUS", help="Reserve CPUs, e.g. 0.5.")] = None
    reserve_memory: Annotated[str | None, typer.Option("--reserve-memory", metavar="BYTES", help="Reserve memory, e.g. 64M.")] = (
        None
    )
    limit_cpu: Annotated[str | None, typer.Option("--limit-cpu", metavar="CPUS", help="Limit CPUs.")] = None
    limit_memory: Annotated[str | None, typer.Option("--limit-memory", metavar="BYTES", help="Limit memory, e.g. 1.5G.")] = None


@dataclasses.dataclass(frozen=True)
class RestartFlags:
    condition: Annotated[
        str | None, typer.Option("--restart-condition", metavar="COND", help="none, on-failure or any (default any).")
    ] = None
    delay: Annotated[
        str | None, typer.Option("--restart-delay", metavar="DURATION", help="Delay between restart attempts (default 5s).")
    ] = None
    max_attempts: Annotated[
        int | None,
        typer.Option("--restart-max-attempts", min=0, metavar="N", help="Maximum restarts before giving up (0 = unlimited)."),
    ] = None
    window: Annotated[
        str | None, typer.Option("--restart-window", metavar="DURATION", help="Window used to evaluate the restart policy.")
    ] = None


@dataclasses.dataclass(frozen=True)
class HealthFlags:
    cmd: Annotated[str | None, typer.Option("--health-cmd", metavar="CMD", help="Command run to check health.")] = None
    interval: Annotated[str | None, typer.Option("--health-interval", metavar="DURATION", help="Time between checks.")] = None
    timeout: Annotated[str | None, typer.Option("--health-timeout", metavar="DURATION", help="Maximum time a check may run.")] = (
        None
    )
    retries: Annotated[
        int | None, typer.Option("--health-retries", min=0, metavar="N", help="Consecutive failures to report unhealthy.")
    ] = None
    start_period: Annotated[
        str | None, typer.Option("--health-start-period", metavar="DURATION", help="Start period before failures count.")
    ] = None
    disable: Annotated[bool, typer.Option("--no-healthcheck", help="Disable any image HEALTHCHECK.")] = False

    def timings(self) -> Mapping[str, str | None]:
        return {"--health-interval": self.interval, "--health-timeout": self.timeout, "--health-start-period": self.start_period}


@dataclasses.dataclass(frozen=True)
class UpdatePolicy:
    """The --update-* flags as typed; None = not given."""

    parallelism: Annotated[
        int | None, typer.Option("--update-parallelism", min=0, metavar="N", help="Tasks updated at once (0 = all; default 1).")
    ] = None
    delay: Annotated[
        str | None, typer.Option("--update-delay", metavar="DURATION", help="Delay between updates (default 0s).")
    ] = None
    failure_action: Annotated[
        str | None,
        typer.Option("--update-failure-action", metavar="ACTION", help="pause, continue or rollback (default pause)."),
    ] = None
    monitor: Annotated[
        str | None,
        typer.Option("--update-monitor", metavar="DURATION", help="Time a new task must stay healthy (default 5s)."),
    ] = None
    max_failure_ratio: Annotated[
        float | None, typer.Option("--update-max-failure-ratio", metavar="RATIO", help="Failure rate tolerated (default 0).")
    ] = None
    order: Annotated[
        str | None, typer.Option("--update-order", metavar="ORDER", help="stop-first or start-first (default stop-first).")
    ] = None
    canary: Annotated[
        int | None,
        typer.Option(
            "--update-canary", min=0, metavar="N", help="Start N new tasks beside the old ones and wait for `service promote`."
        ),
    ] = None
    auto_promote: Annotated[
        bool | None,
        typer.Option(
            "--update-auto-promote/--no-update-auto-promote", help="Promote canaries once healthy through the monitor period."
        ),
    ] = None


@dataclasses.dataclass(frozen=True)
class RollbackPolicy:
    """The --rollback-* flags: the same policy, without canaries, and a
    rollback is not itself rolled back."""

    parallelism: Annotated[
        int | None,
        typer.Option("--rollback-parallelism", min=0, metavar="N", help="Tasks rolled back at once (0 = all; default 1)."),
    ] = None
    delay: Annotated[
        str | None, typer.Option("--rollback-delay", metavar="DURATION", help="Delay between rollbacks (default 0s).")
    ] = None
    failure_action: Annotated[
        str | None, typer.Option("--rollback-failure-action", metavar="ACTION", help="pause or continue (default pause).")
    ] = None
    monitor: Annotated[
        str | None,
        typer.Option("--rollback-monitor", metavar="DURATION", help="Time a task must stay healthy (default 5s)."),
    ] = None
    max_failure_ratio: Annotated[
        float | None, typer.Option("--rollback-max-failure-ratio", metavar="RATIO", help="Failure rate tolerated (default 0).")
    ] = None
    order: Annotated[
        str | None, typer.Option("--rollback-order", metavar="ORDER", help="stop-first or start-first (default stop-first).")
    ] = None


@dataclasses.dataclass(frozen=True)
class NetworkFlags:
    """`service create`'s networking."""

    networks: Annotated[
        list[str] | None, typer.Option("--network", metavar="NETWORK", help="Attach to an overlay network; repeatable.")
    ] = None
    endpoint_mode: Annotated[
        str | None,
        typer.Option("--endpoint-mode", metavar="vip|dnsrr", help="Name resolves to a VIP (default) or to the task IPs."),
    ] = None
    publish: Annotated[
        list[str] | None,
        typer.Option(
            "--publish",
            "-p",
            metavar="SPEC",
            help="published=8080,target=80,protocol=tcp|udp,mode=ingress|host (protocol and mode optional), "
            "or 8080:80 or 8080:80/udp; repeatable.",
        ),
    ] = None


# ---- images (issue 9) ----

PULL_POLICIES = ("always", "missing", "never")


@dataclasses.dataclass(frozen=True)
class ImageFlags:
    """How a service's image is pinned and pulled (`service create` and `update`)."""

    with_registry_auth: Annotated[
        bool,
        typer.Option(
            "--with-registry-auth",
            help="Send registry credentials (from the docker client config) to the nodes that run the tasks.",
        ),
    ] = False
    no_resolve_image: Annotated[
        bool, typer.Option("--no-resolve-image", help="Do not query the registry to pin the image to a digest.")
    ] = False
    pull: Annotated[
        str | None,
        typer.Option("--pull", metavar="WHEN", help="always, missing or never: when nodes pull the image (default missing)."),
    ] = None

    def policy(self) -> int | None:
        """--pull as the spec's ImagePullPolicy, None when not given."""
        if self.pull is None:
            return None
        if self.pull not in PULL_POLICIES:
            raise typer.BadParameter(f"expected one of {', '.join(PULL_POLICIES)}, got {self.pull!r}", param_hint="--pull")
        return {"always": pb.PULL_ALWAYS, "missing": pb.PULL_MISSING, "never": pb.PULL_NEVER}[self.pull]


# ---- volumes, secrets and configs (issue 10; parsed by cli/storage.py) ----------------

_MOUNT_HELP = (
    "type=volume|bind|tmpfs,source=NAME|PATH,target=PATH[,readonly][,volume-driver=D][,volume-opt=K=V]"
    "[,volume-label=K=V][,volume-nocopy][,tmpfs-size=SIZE][,tmpfs-mode=MODE]; type defaults to volume; "
    "sources and targets may use {{.Service.Name}}, {{.Task.Slot}}, {{.Node.Hostname}}...; repeatable."
)
_FILE_HELP = "source=NAME[,target=...][,uid=N][,gid=N][,mode=0444], or just NAME; repeatable."


@dataclasses.dataclass(frozen=True)
class StorageFlags:
    """`service create`'s mounts, secrets and configs."""

    mounts: Annotated[list[str] | None, typer.Option("--mount", metavar="SPEC", help="Attach a filesystem: " + _MOUNT_HELP)] = (
        None
    )
    secrets: Annotated[
        list[str] | None,
        typer.Option("--secret", metavar="SPEC", help="Expose a secret at /run/secrets/TARGET: " + _FILE_HELP),
    ] = None
    configs: Annotated[
        list[str] | None,
        typer.Option("--config", metavar="SPEC", help="Expose a config at TARGET (default /NAME): " + _FILE_HELP),
    ] = None


@dataclasses.dataclass(frozen=True)
class StorageUpdateFlags:
    """`service update`'s changes to mounts, secrets and configs (each
    replaces the task spec: a rolling update)."""

    mount_add: Annotated[
        list[str] | None,
        typer.Option("--mount-add", metavar="SPEC", help="Add or replace (same target) a mount: " + _MOUNT_HELP),
    ] = None
    mount_rm: Annotated[
        list[str] | None, typer.Option("--mount-rm", metavar="TARGET", help="Remove the mount at TARGET; repeatable.")
    ] = None
    secret_add: Annotated[list[str] | None, typer.Option("--secret-add", metavar="SPEC", help="Add a secret: " + _FILE_HELP)] = (
        None
    )
    secret_rm: Annotated[list[str] | None, typer.Option("--secret-rm", metavar="NAME", help="Remove a secret; repeatable.")] = (
        None
    )
    config_add: Annotated[list[str] | None, typer.Option("--config-add", metavar="SPEC", help="Add a config: " + _FILE_HELP)] = (
        None
    )
    config_rm: Annotated[list[str] | None, typer.Option("--config-rm", metavar="NAME", help="Remove a config; repeatable.")] = (
        None
    )


# ---- service options (issue 11) ----------------------------------------------------
# `service create` and `service update` share ContainerFlags; the list-valued
# options are set on create (ContainerCreateFlags) and changed by -add/-rm
# flags on update (ContainerUpdateFlags), as docker names them.

_Strs = list[str] | None


@dataclasses.dataclass(frozen=True)
class ContainerFlags:
    user: Annotated[str | None, typer.Option("--user", "-u", metavar="USER", help="Username or UID (USER[:GROUP]).")] = None
    workdir: Annotated[
        str | None, typer.Option("--workdir", "-w", metavar="DIR", help="Working directory inside the container.")
    ] = None
    hostname: Annotated[
        str | None,
        typer.Option("--hostname", metavar="NAME", help="Container hostname; templates such as {{.Node.Hostname}} allowed."),
    ] = None
    init: Annotated[
        bool | None,
        typer.Option("--init/--no-init", help="Run an init inside the container that forwards signals and reaps processes."),
    ] = None
    read_only: Annotated[
        bool | None, typer.Option("--read-only/--no-read-only", help="Mount the container's root filesystem read-only.")
    ] = None
    tty: Annotated[bool | None, typer.Option("--tty/--no-tty", help="Allocate a pseudo-TTY.")] = None
    stop_signal: Annotated[
        str | None, typer.Option("--stop-signal", metavar="SIGNAL", help="Signal to stop the container (e.g. SIGQUIT).")
    ] = None
    cap_add: Annotated[_Strs, typer.Option("--cap-add", metavar="CAP", help="Add a Linux capability (or ALL); repeatable.")] = (
        None
    )
    cap_drop: Annotated[
        _Strs, typer.Option("--cap-drop", metavar="CAP", help="Drop a Linux capability (or ALL); repeatable.")
    ] = None
    log_driver: Annotated[
        str | None, typer.Option("--log-driver", metavar="DRIVER", help="Logging driver for the containers.")
    ] = None
    log_opt: Annotated[_Strs, typer.Option("--log-opt", metavar="K=V", help="Logging driver option; repeatable.")] = None
    limit_pids: Annotated[
        int | None, typer.Option("--limit-pids", min=0, metavar="N", help="Limit the number of processes (0 = unlimited).")
    ] = None
    replicas_max_per_node: Annotated[
        int | None,
        typer.Option(
            "--replicas-max-per-node", min=0, metavar="N", help="Maximum tasks of the service per node (0 = unlimited)."
        ),
    ] = None
    max_concurrent: Annotated[
        int | None,
        typer.Option("--max-concurrent", min=0, metavar="N", help="Replicated jobs: tasks run at once (default: --replicas)."),
    ] = None
    health_start_interval: Annotated[
        str | None,
        typer.Option("--health-start-interval", metavar="DURATION", help="Time between health checks during the start period."),
    ] = None


@dataclasses.dataclass(frozen=True)
class ContainerCreateFlags:
    sysctl: Annotated[_Strs, typer.Option("--sysctl", metavar="K=V", help="Namespaced kernel parameter; repeatable.")] = None
    ulimit: Annotated[
        _Strs, typer.Option("--ulimit", metavar="ULIMIT", help="Ulimit NAME=SOFT[:HARD], e.g. nofile=1024:2048; repeatable.")
    ] = None
    group: Annotated[_Strs, typer.Option("--group", metavar="GROUP", help="Supplementary group; repeatable.")] = None
    dns: Annotated[_Strs, typer.Option("--dns", metavar="IP", help="DNS server for names outside the cluster; repeatable.")] = (
        None
    )
    dns_search: Annotated[_Strs, typer.Option("--dns-search", metavar="DOMAIN", help="DNS search domain; repeatable.")] = None
    dns_option: Annotated[_Strs, typer.Option("--dns-option", metavar="OPT", help="DNS resolver option; repeatable.")] = None
    host: Annotated[_Strs, typer.Option("--host", metavar="HOST:IP", help="Add a line to /etc/hosts; repeatable.")] = None
    env_file: Annotated[_Strs, typer.Option("--env-file", metavar="FILE", help="Read environment variables from a file.")] = None
    placement_pref: Annotated[
        _Strs, typer.Option("--placement-pref", metavar="PREF", help="Placement preference, e.g. spread=node.labels.zone.")
    ] = None
    generic_resource: Annotated[
        _Strs, typer.Option("--generic-resource", metavar="KIND=N", help="Reserve a user-defined resource, e.g. gpu=1.")
    ] = None


@dataclasses.dataclass(frozen=True)
class ContainerUpdateFlags:
    entrypoint: Annotated[str | None, typer.Option("--entrypoint", metavar="CMD", help="Overwrite the image's ENTRYPOINT.")] = (
        None
    )
    label_add: Annotated[_Strs, typer.Option("--label-add", metavar="K=V", help="Add or update a service label.")] = None
    label_rm: Annotated[_Strs, typer.Option("--label-rm", metavar="KEY", help="Remove a service label.")] = None
    container_label_add: Annotated[
        _Strs, typer.Option("--container-label-add", metavar="K=V", help="Add or update a container label.")
    ] = None
    container_label_rm: Annotated[
        _Strs, typer.Option("--container-label-rm", metavar="KEY", help="Remove a container label.")
    ] = None
    publish_add: Annotated[_Strs, typer.Option("--publish-add", metavar="SPEC", help="Add or update a published port.")] = None
    publish_rm: Annotated[
        _Strs,
        typer.Option("--publish-rm", metavar="PORT", help="Remove a published port by its target port (TARGET[/PROTOCOL])."),
    ] = None
    endpoint_mode: Annotated[str | None, typer.Option("--endpoint-mode", metavar="vip|dnsrr", help="Endpoint mode.")] = None
    sysctl_add: Annotated[_Strs, typer.Option("--sysctl-add", metavar="K=V", help="Add or update a sysctl.")] = None
    sysctl_rm: Annotated[_Strs, typer.Option("--sysctl-rm", metavar="KEY", help="Remove a sysctl.")] = None
    ulimit_add: Annotated[
        _Strs, typer.Option("--ulimit-add", metavar="ULIMIT", help="Add or update a ulimit (NAME=SOFT[:HARD]).")
    ] = None
    ulimit_rm: Annotated[_Strs, typer.Option("--ulimit-rm", metavar="NAME", help="Remove a ulimit.")] = None
    group_add: Annotated[_Strs, typer.Option("--group-add", metavar="GROUP", help="Add a supplementary group.")] = None
    group_rm: Annotated[_Strs, typer.Option("--group-rm", metavar="GROUP", help="Remove a supplementary group.")] = None
    dns_add: Annotated[_Strs, typer.Option("--dns-add", metavar="IP", help="Add a DNS server.")] = None
    dns_rm: Annotated[_Strs, typer.Option("--dns-rm", metavar="IP", help="Remove a DNS server.")] = None
    dns_search_add: Annotated[_Strs, typer.Option("--dns-search-add", metavar="DOMAIN", help="Add a DNS search domain.")] = None
    dns_search_rm: Annotated[_Strs, typer.Option("--dns-search-rm", metavar="DOMAIN", help="Remove a DNS search domain.")] = None
    dns_option_add: Annotated[_Strs, typer.Option("--dns-option-add", metavar="OPT", help="Add a DNS option.")] = None
    dns_option_rm: Annotated[_Strs, typer.Option("--dns-option-rm", metavar="OPT", help="Remove a DNS option.")] = None
    host_add: Annotated[_Strs, typer.Option("--host-add", metavar="HOST:IP", help="Add an /etc/hosts line.")] = None
    host_rm: Annotated[_Strs, typer.Option("--host-rm", metavar="HOST[:IP]", help="Remove a host from the /etc/hosts lines.")] = (
        None
    )
    placement_pref_add: Annotated[
        _Strs, typer.Option("--placement-pref-add", metavar="PREF", help="Add a placement preference (spread=LABEL).")
    ] = None
    placement_pref_rm: Annotated[
        _Strs, typer.Option("--placement-pref-rm", metavar="PREF", help="Remove a placement preference (spread=LABEL).")
    ] = None
    generic_resource_add: Annotated[
        _Strs, typer.Option("--generic-resource-add", metavar="KIND=N", help="Add or update a generic resource reservation.")
    ] = None
    generic_resource_rm: Annotated[
        _Strs, typer.Option("--generic-resource-rm", metavar="KIND", help="Remove a generic resource reservation.")
    ] = None


# ---- cluster settings (issue 13, part A) -----------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClusterSettingsFlags:
    """`cluster update`: the settings fixed at init until issue 13. Names and
    meanings as `docker swarm update` where Docker has the setting. The
    autolock flag (issue 13, part B) belongs in this group."""

    dispatcher_heartbeat: Annotated[
        str | None,
        typer.Option(
            "--dispatcher-heartbeat", metavar="DURATION", help="How often agents send heartbeats to the managers (default 500ms)."
        ),
    ] = None
    node_down_after: Annotated[
        str | None,
        typer.Option(
            "--node-down-after",
            metavar="DURATION",
            help="Silence after which a node is marked down and its tasks replaced (default 3s).",
        ),
    ] = None
    task_history_limit: Annotated[
        int | None,
        typer.Option("--task-history-limit", metavar="N", help="Finished tasks kept per slot (default 5)."),
    ] = None
    cert_expiry: Annotated[
        str | None,
        typer.Option(
            "--cert-expiry", metavar="DURATION", help="Validity period of node certificates (default 2160h); nodes renew early."
        ),
    ] = None


# ---- security (issue 13) --------------------------------------------------------------


def parse_bool_flag(text: str, flag: str) -> bool:
    """docker's `--autolock=true|false` spelling."""
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise typer.BadParameter(f"expected true or false, got {text!r}", param_hint=flag)


@dataclasses.dataclass(frozen=True)
class AutolockFlags:
    """`cluster update`'s autolock flag (issue 13). The PKI work (issue 13
    part A) owns `cluster update`'s other settings: add this group to that
    command and call cli.security.apply_autolock with it."""

    autolock: Annotated[
        str | None,
        typer.Option(
            "--autolock",
            metavar="true|false",
            help="Require the unlock key to start a manager after a restart (its data key is wrapped by it).",
        ),
    ] = None

    def wanted(self) -> bool | None:
        return None if self.autolock is None else parse_bool_flag(self.autolock, "--autolock")


KeyFileOpt = Annotated[
    str | None,
    typer.Option(
        "--key-file",
        metavar="FILE",
        help="Read the key or passphrase from FILE ('-' for standard input) instead of prompting.",
    ),
]
