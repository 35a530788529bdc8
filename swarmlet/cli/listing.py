"""`service ls --filter` and `node ls --filter` (issue 11), with docker's
semantics: values of one key are alternatives, different keys must all
match; id and name match prefixes; `label=KEY` or `label=KEY=VALUE`.

Pure: a filter list -> a predicate; an unknown key or value is a usage
error naming the filter before anything is asked of the daemon."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated

import typer

from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.options import parsed
from swarmlet.cli.parse import parse_filter

SERVICE_FILTERS = ("id", "name", "label", "mode")
NODE_FILTERS = ("id", "name", "role", "membership", "label", "node.label")
_MODES = ("replicated", "global", "replicated-job", "global-job")
_ROLES = ("manager", "worker")
_MEMBERSHIPS = ("accepted", "pending")

ServiceFilterOpt = Annotated[
    list[str] | None,
    typer.Option("--filter", "-f", metavar="KEY=VALUE", help="id=, name=, label=KEY[=VALUE], mode=; repeatable."),
]
NodeFilterOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--filter",
        "-f",
        metavar="KEY=VALUE",
        help="id=, name=, role=, membership=, label=KEY[=VALUE] (engine), node.label=KEY[=VALUE]; repeatable.",
    ),
]


def _parse(items: Iterable[str], keys: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        key, value = parsed(parse_filter, item, "--filter")
        if key not in keys:
            raise typer.BadParameter(f"invalid filter {key!r}: supported filters are {', '.join(keys)}", param_hint="--filter")
        out.setdefault(key, []).append(value)
    return out


def _one_of(key: str, values: list[str], allowed: Sequence[str]) -> None:
    for v in values:
        if v.lower() not in allowed:
            raise typer.BadParameter(f"invalid {key} filter {v!r}: expected one of {', '.join(allowed)}", param_hint="--filter")


def _labels_match(labels: Mapping[str, str], wanted: list[str]) -> bool:
    """Every label filter holds: the key is there (with the value, if given)."""
    for w in wanted:
        k, sep, v = w.partition("=")
        if k not in labels or (sep and labels[k] != v):
            return False
    return True


def _service_mode(svc: pb.Service) -> str:
    return {"global": "global", "replicated_job": "replicated-job", "global_job": "global-job"}.get(
        svc.spec.WhichOneof("mode") or "", "replicated"
    )


def filter_services(items: Iterable[str]) -> Callable[[pb.Service], bool]:
    f = _parse(items, SERVICE_FILTERS)
    if "mode" in f:
        _one_of("mode", f["mode"], _MODES)

    def keep(s: pb.Service) -> bool:
        if "id" in f and not any(s.id.startswith(v) for v in f["id"]):
            return False
        if "name" in f and not any(s.spec.name.startswith(v) for v in f["name"]):
            return False
        if "label" in f and not _labels_match(s.spec.labels, f["label"]):
            return False
        return not ("mode" in f and _service_mode(s) not in [m.lower() for m in f["mode"]])

    return keep


def filter_nodes(items: Iterable[str]) -> Callable[[pb.Node], bool]:
    f = _parse(items, NODE_FILTERS)
    if "role" in f:
        _one_of("role", f["role"], _ROLES)
    if "membership" in f:
        _one_of("membership", f["membership"], _MEMBERSHIPS)

    def keep(n: pb.Node) -> bool:
        if "id" in f and not any(n.id.startswith(v) for v in f["id"]):
            return False
        if "name" in f and not any(n.description.hostname.startswith(v) for v in f["name"]):
            return False
        role = "manager" if n.role == pb.NodeSpec.MANAGER else "worker"
        if "role" in f and role not in [r.lower() for r in f["role"]]:
            return False
        # Every node in the store was accepted (joining is certificate
        # issuance for a valid token): none is ever pending.
        if "membership" in f and "accepted" not in [m.lower() for m in f["membership"]]:
            return False
        if "label" in f and not _labels_match(n.description.engine_labels, f["label"]):
            return False
        return not ("node.label" in f and not _labels_match(n.spec.labels, f["node.label"]))

    return keep
