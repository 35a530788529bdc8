"""`swarmlet secret ...` and `swarmlet config ...`: create, list, inspect and
remove secrets and configs. One object model for both, as in Swarm: an
immutable named blob of at most 500 KiB that services mount as a file. A
secret's data is never shown again once created; a config's is
(`config inspect --pretty`)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, BinaryIO

import typer

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.client import CLIError, DaemonClient, connect, handle_errors, report_errors
from swarmlet.cli.options import FormatOpt, IdsOpt, PrettyOpt, check_format, check_pretty, parsed
from swarmlet.cli.output import (
    PrettyItem,
    format_table,
    format_timestamp,
    pretty_lines,
    time_ago,
    to_json,
    trunc_id,
)
from swarmlet.cli.parse import parse_kv
from swarmlet.core import secrets as sc

secret_app = typer.Typer(
    no_args_is_help=True, help="Manage secrets: credentials services receive as files, kept in memory on nodes."
)
config_app = typer.Typer(no_args_is_help=True, help="Manage configs: files services receive, not secret.")

HEADERS = ["ID", "NAME", "CREATED", "UPDATED"]


@dataclass(frozen=True)
class _Noun:
    """The RPCs and messages of one kind."""

    kind: sc.Kind
    spec: Callable[..., Any]
    create: Callable[[DaemonClient, Any], Any]
    get: Callable[[DaemonClient, str], Any]
    ls: Callable[[DaemonClient], list[Any]]
    rm: Callable[[DaemonClient, str], None]


SECRET = _Noun(
    sc.SECRET,
    pb.SecretSpec,
    lambda d, spec: d.call(d.stub.CreateSecret, cpb.CreateSecretRequest(spec=spec)).secret,
    lambda d, ref: d.call(d.stub.GetSecret, cpb.GetSecretRequest(ref=ref)).secret,
    lambda d: list(d.call(d.stub.ListSecrets, cpb.ListSecretsRequest()).secrets),
    lambda d, ref: d.call(d.stub.RemoveSecret, cpb.RemoveSecretRequest(ref=ref)) and None,
)
CONFIG = _Noun(
    sc.CONFIG,
    pb.ConfigSpec,
    lambda d, spec: d.call(d.stub.CreateConfig, cpb.CreateConfigRequest(spec=spec)).config,
    lambda d, ref: d.call(d.stub.GetConfig, cpb.GetConfigRequest(ref=ref)).config,
    lambda d: list(d.call(d.stub.ListConfigs, cpb.ListConfigsRequest()).configs),
    lambda d, ref: d.call(d.stub.RemoveConfig, cpb.RemoveConfigRequest(ref=ref)) and None,
)


def read_data(path: str, stdin: BinaryIO | None = None) -> bytes:
    """The content of FILE, or of standard input for "-". At most one byte
    over the limit is read: a bigger file is refused without reading it all."""
    try:
        if path == "-":
            src = stdin if stdin is not None else sys.stdin.buffer
            return src.read(sc.MAX_DATA + 1)
        with open(path, "rb") as f:
            return f.read(sc.MAX_DATA + 1)
    except OSError as e:
        raise typer.BadParameter(f"cannot read {path}: {e.strerror}", param_hint="FILE") from None


def _create(ctx: typer.Context, noun: _Noun, name: str, path: str, labels: list[str]) -> None:
    spec = noun.spec(name=name, data=read_data(path))
    for item in labels:
        k, v = parsed(lambda text: parse_kv(text, what="label"), item, "--label")
        spec.labels[k] = v
    try:
        sc.validate_spec(noun.kind, spec)  # the manager's own checks, before sending 500 KiB
    except ValueError as e:
        raise CLIError(str(e)) from None
    with connect(ctx) as d:
        typer.echo(noun.create(d, spec).id)


def rows(objs: list[Any], now: float) -> list[list[str]]:
    return [
        [trunc_id(o.id), o.spec.name, time_ago(o.meta.created_at, now), time_ago(o.meta.updated_at, now)]
        for o in sorted(objs, key=lambda o: (o.spec.name, o.id))
    ]


def _ls(ctx: typer.Context, noun: _Noun, quiet: bool, fmt: str | None) -> None:
    check_format(fmt)
    with connect(ctx) as d:
        objs = noun.ls(d)
    if fmt == "json":
        typer.echo(to_json(objs))
    elif quiet:
        for o in objs:
            typer.echo(o.id)
    else:
        typer.echo(format_table(HEADERS, rows(objs, time.time())))


def pretty(obj: pb.Secret | pb.Config) -> str:
    items: list[PrettyItem] = [(0, "ID", obj.id), (0, "Name", obj.spec.name)]
    if obj.spec.labels:
        items.append((0, "Labels", None))
        items += [(1, k, v) for k, v in sorted(obj.spec.labels.items())]
    items += [
        (0, "Created at", format_timestamp(obj.meta.created_at)),
        (0, "Updated at", format_timestamp(obj.meta.updated_at)),
    ]
    text = pretty_lines(items)
    if isinstance(obj, pb.Config):
        text += "\nData:\n" + obj.spec.data.decode("utf-8", errors="replace")
    return text.rstrip("\n")


def _inspect(ctx: typer.Context, noun: _Noun, refs: list[str], fmt: str | None, pretty_out: bool) -> None:
    check_pretty(pretty_out, fmt)
    found: list[Any] = []
    errs: list[str] = []
    with connect(ctx) as d:
        for ref in refs:
            try:
                found.append(noun.get(d, ref))
            except CLIError as e:
                errs.append(e.message)
    if pretty_out:
        if found:
            typer.echo("\n\n".join(pretty(o) for o in found))
    else:
        typer.echo(to_json(found))
    report_errors(errs)


def _rm(ctx: typer.Context, noun: _Noun, refs: list[str]) -> None:
    errs: list[str] = []
    with connect(ctx) as d:
        for ref in refs:
            try:
                noun.rm(d, ref)
                typer.echo(ref)
            except CLIError as e:
                errs.append(e.message)
    report_errors(errs)


NameArg = Annotated[str, typer.Argument(metavar="NAME")]
FileArg = Annotated[str, typer.Argument(metavar="FILE", help="File with the content, or - for standard input.")]
RefsArg = Annotated[list[str], typer.Argument(metavar="NAME", help="Name, id or unique id prefix.")]
LabelOpt = Annotated[list[str] | None, typer.Option("--label", "-l", metavar="K=V", help="Label; repeatable.")]


def _register(app: typer.Typer, noun: _Noun) -> None:
    word = noun.kind.word

    @app.command("create", help=f"Create a {word} from a file or standard input (at most 500 KiB).")
    @handle_errors
    def create(ctx: typer.Context, name: NameArg, path: FileArg, label: LabelOpt = None) -> None:
        _create(ctx, noun, name, path, label or [])

    @app.command("ls", help=f"List {word}s.")
    @handle_errors
    def ls(ctx: typer.Context, quiet: IdsOpt = False, fmt: FormatOpt = None) -> None:
        _ls(ctx, noun, quiet, fmt)

    inspect_help = (
        "Display secrets' metadata (JSON by default); the data is never shown."
        if noun.kind.secret
        else "Display configs (JSON by default; --pretty shows the content)."
    )

    @app.command("inspect", help=inspect_help)
    @handle_errors
    def inspect(
        ctx: typer.Context,
        refs: RefsArg,
        fmt: FormatOpt = None,
        pretty_out: PrettyOpt = False,
    ) -> None:
        _inspect(ctx, noun, refs, fmt, pretty_out)

    @app.command("rm", help=f"Remove {word}s (refused while a service uses one).")
    @handle_errors
    def rm(ctx: typer.Context, refs: RefsArg) -> None:
        _rm(ctx, noun, refs)


_register(secret_app, SECRET)
_register(config_app, CONFIG)
