"""Flags shared by several commands, each declared once.

Single flags are `Annotated` aliases (FormatOpt, IdsOpt, ...). Groups of flags
are dataclasses whose fields are the flags; `@flags(name=Group)` adds a
group's flags to a command and hands the command one instance, so `service
create` and `service update` declare the --update-*/--rollback-* and
--reserve-*/--restart-*/--health-* flags nowhere but in one group. The
groups only those two commands take are in service_flags.py, so that other
commands do not build them at start-up (issue 15).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
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
