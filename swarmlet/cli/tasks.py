"""Task listings: what `service ps` and `node ps` share once their
arguments are turned into ListTasks requests."""

from __future__ import annotations

import time
from collections.abc import Iterable

import typer

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.client import DaemonClient
from swarmlet.cli.options import TaskListFlags, check_format, parsed
from swarmlet.cli.output import filter_tasks, format_task_list
from swarmlet.cli.parse import parse_task_filters


def check(f: TaskListFlags) -> dict[str, list[str]]:
    """The parsed --filter values; bad flags are usage errors before any call."""
    check_format(f.fmt)
    return parsed(parse_task_filters, f.filters or [], "--filter")


def show(d: DaemonClient, requests: Iterable[cpb.ListTasksRequest], f: TaskListFlags, filters: dict[str, list[str]]) -> None:
    """Ask for each request's tasks, merge, filter and print them."""
    tasks: dict[str, pb.Task] = {}
    names: dict[str, str] = {}
    waiting: dict[str, str] = {}
    for req in requests:
        resp = d.call(d.stub.ListTasks, req)
        names.update(resp.node_names)
        waiting.update(resp.waiting)
        for t in resp.tasks:
            tasks[t.id] = t
    selected = filter_tasks(tasks.values(), filters, names)
    text = format_task_list(selected, names, time.time(), fmt=f.fmt, quiet=f.quiet, no_trunc=f.no_trunc, waiting=waiting)
    if text:
        typer.echo(text)
