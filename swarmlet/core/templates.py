"""Swarm's placeholders in task values: `{{.Service.Name}}`, `{{.Task.Slot}}`,
`{{.Node.Hostname}}`, `{{index .Service.Labels "key"}}`...

Used where docker's `service create` accepts them (--env values, --hostname,
mount sources). Only this small subset of Go's template language is
accepted: a field reference, or `index` into the service labels. Anything
else is refused when the spec is validated (`check`), so a template can never
fail on a node. The node expands them (`expand`) when it creates the
container, because only it knows its own host name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb

FIELDS = (
    ".Service.ID",
    ".Service.Name",
    ".Service.Labels",
    ".Task.ID",
    ".Task.Name",
    ".Task.Slot",
    ".Node.ID",
    ".Node.Hostname",
    ".Node.Platform.OS",
    ".Node.Platform.Architecture",
)

_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
_INDEX = re.compile(r'^index\s+\.Service\.Labels\s+"([^"\\]*)"$')


class TemplateError(errors.Invalid):
    """A placeholder that is not one of FIELDS (or not well formed)."""


@dataclass(frozen=True)
class Context:
    """The values placeholders expand to, for one task on one node."""

    service_id: str = ""
    service_name: str = ""
    service_labels: Mapping[str, str] = field(default_factory=dict)
    task_id: str = ""
    task_slot: int = 0
    node_id: str = ""
    node_hostname: str = ""
    node_os: str = ""
    node_arch: str = ""

    @property
    def task_name(self) -> str:
        # As docker names tasks: service.slot.id (global services: service.node.id).
        middle = str(self.task_slot) if self.task_slot else self.node_id
        return f"{self.service_name}.{middle}.{self.task_id}"


def _value(action: str, ctx: Context | None, text: str) -> str:
    a = action.strip()
    m = _INDEX.match(a)
    if m is not None:
        return "" if ctx is None else ctx.service_labels.get(m.group(1), "")
    if a not in FIELDS:
        raise TemplateError(
            f"unknown template field {{{{{a}}}}} in {text!r}; use one of "
            + ", ".join("{{" + f + "}}" for f in FIELDS)
            + ', or {{index .Service.Labels "KEY"}}'
        )
    if ctx is None:
        return ""
    if a == ".Service.Labels":
        # Go prints a map as map[k:v ...], sorted by key.
        return "map[" + " ".join(f"{k}:{v}" for k, v in sorted(ctx.service_labels.items())) + "]"
    values = {
        ".Service.ID": ctx.service_id,
        ".Service.Name": ctx.service_name,
        ".Task.ID": ctx.task_id,
        ".Task.Name": ctx.task_name,
        ".Task.Slot": str(ctx.task_slot) if ctx.task_slot else "",
        ".Node.ID": ctx.node_id,
        ".Node.Hostname": ctx.node_hostname,
        ".Node.Platform.OS": ctx.node_os,
        ".Node.Platform.Architecture": ctx.node_arch,
    }
    return values[a]


def _render(text: str, ctx: Context | None) -> str:
    if "{{" not in text and "}}" not in text:
        return text
    out: list[str] = []
    pos = 0
    for m in _ACTION.finditer(text):
        out.append(text[pos : m.start()])
        out.append(_value(m.group(1), ctx, text))
        pos = m.end()
    rest = text[pos:]
    if "{{" in rest or "}}" in rest:
        raise TemplateError(f"unbalanced template braces in {text!r}")
    out.append(rest)
    return "".join(out)


def check(text: str) -> None:
    """Raise TemplateError if `text` holds a placeholder `expand` would refuse."""
    _render(text, None)


def expand(text: str, ctx: Context) -> str:
    """`text` with every placeholder replaced by its value in `ctx`."""
    return _render(text, ctx)


# ---- a task's fields (issue 11) ----


def task_context(task: pb.Task, node_id: str, hostname: str, os: str = "", arch: str = "") -> Context:
    """The values for one task on the node that runs it."""
    return Context(
        service_id=task.service_id,
        service_name=task.service_name,
        service_labels=dict(task.service_labels),
        task_id=task.id,
        task_slot=int(task.slot),
        node_id=node_id,
        node_hostname=hostname,
        node_os=os,
        node_arch=arch,
    )


def expand_task(task: pb.Task, ctx: Context) -> pb.Task:
    """A copy of `task` with its placeholders expanded where Swarm expands
    them: --env values and --hostname. (Validation checked them, so this
    does not raise for a spec that was accepted.)"""
    out = pb.Task()
    out.CopyFrom(task)
    c = out.spec.container
    if any("{{" in e for e in c.env):
        expanded = [expand(e, ctx) for e in c.env]
        del c.env[:]
        c.env.extend(expanded)
    if "{{" in c.hostname:
        c.hostname = expand(c.hostname, ctx)
    return out
