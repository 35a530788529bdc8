"""Compose's container options (issue 11's service options) -> the same
ContainerSpec/TaskSpec fields the `service create` flags set. The values are
checked by the parsers those flags use (core/service_options.py,
core/generic.py, core/constraints.py): one grammar for each option, with the
error re-raised at the file, line and key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.compose.check import Node
from swarmlet.core import constraints, generic
from swarmlet.core import service_options as so

T = TypeVar("T")


def _core(n: Node, fn: Callable[..., T], *args: Any) -> T:
    """fn(*args), a core parser's error re-raised at the node."""
    try:
        return fn(*args)
    except errors.Invalid as e:
        n.fail(str(e))


def _scalar(n: Node) -> str:
    """A string, or a YAML number written unquoted (sysctl values, ulimits)."""
    v = n.value
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    return n.string()


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def caps(field: object, n: Node) -> None:
    values = _dedupe([_core(e, so.capability, e.string()) for e in n.elements()])
    field.extend(values)  # type: ignore[attr-defined]


def stop_signal(c: pb.ContainerSpec, n: Node) -> None:
    c.stop_signal = _core(n, so.signal_name, _scalar(n))


def sysctls(c: pb.ContainerSpec, n: Node) -> None:
    if isinstance(n.value, dict):
        pairs = [(k, sub) for k, sub in n.items()]
    else:
        pairs = []
        for e in n.elements():
            k, sep, _ = e.string().partition("=")
            if not sep:
                e.fail(f"invalid sysctl {e.string()!r}: expected KEY=VALUE")
            pairs.append((k.strip(), e))
    for k, sub in pairs:
        v = _scalar(sub) if isinstance(n.value, dict) else sub.string().partition("=")[2]
        _core(sub, so.check_sysctl, k, v.strip())
        c.sysctls[k] = v.strip()


def ulimits(c: pb.ContainerSpec, n: Node) -> None:
    """`nofile: 1024` or `nofile: {soft: 1024, hard: 2048}` (as `--ulimit nofile=1024:2048`)."""
    for name, sub in n.mapping().items():
        if isinstance(sub.value, dict):
            for k in sub.keys():
                if k not in ("soft", "hard"):
                    sub.child(k).fail("unknown key (soft or hard)")
            if not sub.has("soft") or not sub.has("hard"):
                sub.fail("expected soft: and hard:")
            text = f"{name}={sub.child('soft').integer()}:{sub.child('hard').integer()}"
        else:
            text = f"{name}={sub.integer()}"
        c.ulimits.append(_core(sub, so.parse_ulimit, text))


def strings(field: object, n: Node) -> None:
    """dns, dns_search, dns_opt, group_add: one string or a list."""
    field.extend(_dedupe([s.strip() for s in n.strings()]))  # type: ignore[attr-defined]


def group_add(c: pb.ContainerSpec, n: Node) -> None:
    c.groups.extend(_dedupe([_scalar(e).strip() for e in n.elements()]))


def extra_hosts(c: pb.ContainerSpec, n: Node) -> None:
    """`- "host:ip"` / `- "host=ip"` or a mapping host: ip -> the /etc/hosts line."""
    if isinstance(n.value, dict):
        pairs = [(k, sub.string(), sub) for k, sub in n.items()]
    else:
        pairs = []
        for e in n.elements():
            text = e.string()
            sep = "=" if "=" in text else ":"
            host, found, ip = text.partition(sep)
            if not found:
                e.fail(f"invalid host {text!r}: expected HOST:IP")
            pairs.append((host, ip, e))
    c.hosts.extend(_dedupe([_core(where, so.host_entry, h, ip) for h, ip, where in pairs]))


def logging(task: pb.TaskSpec, n: Node) -> None:
    for k, sub in n.mapping().items():
        if k == "driver":
            task.log_driver.name = sub.string().strip()
        elif k == "options":
            for ok, ov in sub.dict_or_list(allow_none=False).items():
                task.log_driver.options[ok] = ov or ""
        elif not k.startswith("x-"):
            sub.fail("unknown key")
    if task.log_driver.options and not task.log_driver.name:
        n.fail("logging.options need logging.driver (the options replace the driver's)")


def preferences(placement: pb.Placement, n: Node) -> None:
    """`- spread: node.labels.zone` (as `--placement-pref spread=node.labels.zone`)."""
    for e in n.elements():
        for k, sub in e.mapping().items():
            if k != "spread":
                sub.fail("only spread preferences are supported")
            placement.preferences.add(spread=_core(sub, constraints.parse_spread, sub.string()).descriptor)


def generic_resources(res: pb.Resources, n: Node) -> None:
    """`- discrete_resource_spec: {kind: gpu, value: 2}` (as `--generic-resource gpu=2`)."""
    kinds: dict[str, pb.GenericResource] = {}
    for e in n.elements():
        for k, sub in e.mapping().items():
            if k != "discrete_resource_spec":
                sub.fail(
                    "not supported by swarmlet (discrete_resource_spec only)" if k == "named_resource_spec" else "unknown key"
                )
            spec = {sk: sv for sk, sv in sub.mapping().items()}
            for sk in spec:
                if sk not in ("kind", "value"):
                    spec[sk].fail("unknown key")
            if "kind" not in spec or "value" not in spec:
                sub.fail("expected kind: and value:")
            text = f"{spec['kind'].string()}={spec['value'].integer()}"
            g = _core(sub, generic.parse_request, text)
            kinds[g.kind] = g
    res.generic.extend(kinds.values())
