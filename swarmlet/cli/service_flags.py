"""The flag groups of `service create` and `service update` (see options.py
for how a group becomes flags): apart from the groups every noun shares, so
that the commands that do not take them (`node ls`...) need not build them
(issue 15: a frozen dataclass costs ~1.5 ms at import)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated

import typer


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
