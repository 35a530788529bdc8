"""`swarmlet image ...` (issue 9): images across the cluster's nodes, with no
registry needed. `push` copies an image of the manager's engine to every
ready node, `load` does the same from a `docker save` archive; the nodes
relay it along a chain, so the source sends it once."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from swarmlet.api import control_pb2 as cpb
from swarmlet.cli.client import CLIError, DaemonClient, connect, handle_errors, report_errors
from swarmlet.cli.options import FormatOpt, check_format
from swarmlet.cli.output import format_bytes, format_table, to_json
from swarmlet.cli.progress import Renderer, bar

app = typer.Typer(help="Manage images across the swarm's nodes.", no_args_is_help=True)

CHUNK = 1 << 20
IMAGE_HEADERS = ["IMAGE", "ID", "SIZE", "NODES"]


@app.command("ls")
@handle_errors
def ls(
    ctx: typer.Context,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only display image IDs.")] = False,
    fmt: FormatOpt = None,
) -> None:
    """List the images the nodes hold, and which nodes hold each."""
    check_format(fmt)
    with connect(ctx) as d:
        resp = d.call(d.stub.ListImages, cpb.ListImagesRequest())
    if fmt == "json":
        typer.echo(to_json(resp))
        return
    by_id: dict[str, tuple[set[str], int, list[str]]] = {}
    for ni in resp.images:
        refs, size, nodes = by_id.setdefault(ni.image.id, (set(), ni.image.size, []))
        refs.update(ni.image.tags)
        refs.update(ni.image.digests)
        nodes.append(ni.node_name or ni.node_id[:12])
    if quiet:
        for image_id in sorted(by_id):
            typer.echo(image_id)
        return
    rows = []
    for image_id, (refs, size, nodes) in sorted(by_id.items(), key=lambda kv: (sorted(kv[1][0]) or ["~"])[0]):
        tags = sorted(r for r in refs if "@" not in r) or sorted(refs) or ["<none>"]
        rows.append([", ".join(tags), image_id.removeprefix("sha256:")[:12], format_bytes(size), ", ".join(sorted(nodes))])
    typer.echo(format_table(IMAGE_HEADERS, rows))


@app.command("rm")
@handle_errors
def rm(ctx: typer.Context, images: Annotated[list[str], typer.Argument(metavar="IMAGE")]) -> None:
    """Remove images from every node holding them (refused while a service's task uses one)."""
    problems: list[str] = []
    with connect(ctx) as d:
        for ref in images:
            try:
                resp = d.call(d.stub.RemoveImage, cpb.RemoveImageRequest(ref=ref), timeout=120)
            except CLIError as e:
                problems.append(e.message)
                continue
            typer.echo(f"Untagged and deleted {ref} on {', '.join(resp.removed_from) or 'no node'}")
            problems.extend(f"{ref}: {e}" for e in resp.errors)
    report_errors(problems)


@app.command("push")
@handle_errors
def push(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="An image in this manager's engine.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Suppress progress output.")] = False,
) -> None:
    """Copy an image from this manager's engine to every ready node (no registry)."""
    with connect(ctx) as d:
        code = follow(d, d.stream(d.stub.PushImage, cpb.PushImageRequest(ref=image)), quiet)
    if code:
        raise typer.Exit(code)


@app.command("load")
@handle_errors
def load(
    ctx: typer.Context,
    input_file: Annotated[
        str, typer.Option("--input", "-i", metavar="FILE", help="A `docker save` archive ('-' for standard input).")
    ],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Suppress progress output.")] = False,
) -> None:
    """Load an image archive on this manager and put it on every ready node."""
    if input_file == "-":
        src: BinaryIO = sys.stdin.buffer
    else:
        try:
            src = Path(input_file).open("rb")
        except OSError as e:
            raise CLIError(f"cannot read {input_file}: {e.strerror or e}") from None
    with src, connect(ctx) as d:
        code = follow(d, d.stream(d.stub.LoadImage, _chunks(src)), quiet)
    if code:
        raise typer.Exit(code)


def _chunks(src: BinaryIO) -> Iterator[cpb.LoadImageChunk]:
    while data := src.read(CHUNK):
        yield cpb.LoadImageChunk(data=data)


def transfer_line(p: cpb.ImageTransferProgress) -> str:
    name = p.node_name or p.node_id[:12]
    if p.state == "receiving":
        frac = p.current / p.total if p.total else 0.0
        size = f"{format_bytes(p.current)}/{format_bytes(p.total)}" if p.total else format_bytes(p.current)
        return f"{name}: receiving {bar(min(1.0, frac))} {size}" + (f" from {p.source}" if p.source else "")
    if p.state == "waiting":
        return f"{name}: waiting" + (f" (relay from {p.source})" if p.source else "")
    if p.state == "failed" or p.state == "skipped":
        return f"{name}: {p.state}: {p.error}"
    if p.state == "loaded" and p.source:
        return f"{name}: loaded (from {p.source})"
    return f"{name}: {p.state}"


def follow(d: DaemonClient, updates: Iterable[cpb.ImageTransferProgress], quiet: bool) -> int:
    """Render the per-node progress; 1 if any node failed."""
    renderer = Renderer(sys.stdout, tty=sys.stdout.isatty())
    lines: dict[str, str] = {}
    failed: list[str] = []
    image = ""
    for p in updates:
        image = p.image_id or image
        lines[p.node_id] = transfer_line(p)
        if p.state == "failed":
            failed.append(lines[p.node_id])
        if not quiet:
            renderer.frame([f"image {image.removeprefix('sha256:')[:12]}"] + [lines[k] for k in sorted(lines)])
    if failed:
        for line in failed:
            typer.echo(f"Error: {line}", err=True)
        return 1
    if not quiet:
        renderer.text(f"image {image.removeprefix('sha256:')[:12]} is on every ready node")
    return 0
