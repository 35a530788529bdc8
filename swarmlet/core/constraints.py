"""Placement constraints: parse `node.labels.zone==b` style expressions once,
then match them against nodes.

Pure and cheap: the scheduler matches every pending task's constraints against
every node each round, so parsing happens up front and `Constraint.match` is a
couple of attribute reads and a comparison.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb

ACCEPTED = (
    "node.id, node.hostname, node.role (worker|manager), node.platform.os, "
    "node.platform.arch, node.labels.<label> or engine.labels.<label>, compared with == or !="
)

_ROLES = {"worker": pb.NodeSpec.WORKER, "manager": pb.NodeSpec.MANAGER}

# Docker reports `uname -m` names (x86_64, aarch64) while users usually write
# Go/OCI names (amd64, arm64): treat them as the same platform.
_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "armhf": "arm",
    "i386": "386",
    "i686": "386",
}


class ConstraintError(errors.Invalid):
    """A constraint expression that cannot be parsed or is not supported."""


def _norm_arch(v: str) -> str:
    v = v.lower()
    return _ARCH_ALIASES.get(v, v)


@dataclass(frozen=True)
class Constraint:
    """One parsed expression. `field` is the part before the operator with the
    label name split off into `label` (for node.labels.*)."""

    expr: str
    field: str  # node.id | node.hostname | node.role | node.platform.os | node.platform.arch | node.labels | engine.labels
    label: str
    equal: bool  # True for ==, False for !=
    value: str

    def _node_value(self, node: pb.Node) -> str | None:
        """The node's value for this field, normalised like `value`; None when
        the node has no such value (an absent label)."""
        f = self.field
        if f == "node.labels":
            return node.spec.labels[self.label] if self.label in node.spec.labels else None
        if f == "engine.labels":
            labels = node.description.engine_labels
            return labels[self.label] if self.label in labels else None
        if f == "node.id":
            return node.id
        if f == "node.hostname":
            return node.description.hostname.lower()
        if f == "node.role":
            return "manager" if node.role == pb.NodeSpec.MANAGER else "worker"
        if f == "node.platform.os":
            return node.description.os.lower()
        if f == "node.platform.arch":
            return _norm_arch(node.description.arch)
        return None  # unreachable: parse_constraint only builds known fields

    def match(self, node: pb.Node) -> bool:
        # An absent value never equals anything, so `!=` matches nodes without
        # the label (as in Swarm: "not in zone b" includes unlabelled nodes).
        have = self._node_value(node)
        return (have == self.value) == self.equal

    def __str__(self) -> str:
        return self.expr


def parse_constraint(s: str) -> Constraint:
    """Parse one expression; raise ConstraintError naming it and what is accepted."""
    expr = s.strip()
    ops = [(expr.find(o), o) for o in ("==", "!=") if o in expr]
    if not ops:
        raise ConstraintError(
            f"invalid constraint {s!r}: no operator; expected KEY==VALUE or KEY!=VALUE with KEY one of {ACCEPTED}"
        )
    op = min(ops)[1]
    key, _, value = expr.partition(op)
    key, value = key.strip(), value.strip()
    if "==" in value or "!=" in value:
        raise ConstraintError(f"invalid constraint {s!r}: more than one operator")
    if not key:
        raise ConstraintError(f"invalid constraint {s!r}: empty key; accepted keys: {ACCEPTED}")
    if not value:
        raise ConstraintError(f"invalid constraint {s!r}: empty value")
    equal = op == "=="
    kl = key.lower()
    if kl.startswith("node.labels."):
        label = key[len("node.labels.") :]
        if not label:
            raise ConstraintError(f"invalid constraint {s!r}: empty label name after node.labels.")
        # Labels are user data: compared exactly, like Swarm does for values.
        return Constraint(expr, "node.labels", label, equal, value)
    if kl.startswith("engine.labels."):
        # The engine's own labels (dockerd --label), as its node reports them.
        label = key[len("engine.labels.") :]
        if not label:
            raise ConstraintError(f"invalid constraint {s!r}: empty label name after engine.labels.")
        return Constraint(expr, "engine.labels", label, equal, value)
    if kl == "node.id":
        return Constraint(expr, kl, "", equal, value)
    if kl == "node.hostname":
        # Host names are case-insensitive (DNS).
        return Constraint(expr, kl, "", equal, value.lower())
    if kl == "node.role":
        v = value.lower()
        if v not in _ROLES:
            raise ConstraintError(f"invalid constraint {s!r}: node.role must be worker or manager")
        return Constraint(expr, kl, "", equal, v)
    if kl == "node.platform.os":
        return Constraint(expr, kl, "", equal, value.lower())
    if kl == "node.platform.arch":
        return Constraint(expr, kl, "", equal, _norm_arch(value))
    raise ConstraintError(f"invalid constraint {s!r}: unknown key {key!r}; accepted keys: {ACCEPTED}")


def parse_constraints(exprs: Iterable[str]) -> list[Constraint]:
    return [parse_constraint(e) for e in exprs]


def parse_placement(spec: pb.TaskSpec) -> list[Constraint] | None:
    """A task spec's constraints, or None when one is invalid (validation
    should have refused it; then no node is eligible rather than every node)."""
    try:
        return parse_constraints(spec.placement.constraints)
    except ConstraintError:
        return None


def matches(constraints: Sequence[Constraint], node: pb.Node) -> bool:
    """True if the node satisfies every constraint (an empty list matches all)."""
    for c in constraints:
        if not c.match(node):
            return False
    return True


def first_unmet(constraints: Sequence[Constraint], node: pb.Node) -> Constraint | None:
    """The first constraint the node fails, for error messages."""
    for c in constraints:
        if not c.match(node):
            return c
    return None


# ---- image platforms (issue 17) ----


def platform_pairs(placement: pb.Placement) -> tuple[tuple[str, str], ...]:
    """A placement's platforms as (os, architecture) pairs."""
    return tuple((p.os, p.architecture) for p in placement.platforms)


def platform_matches(platforms: Sequence[tuple[str, str]], node: pb.Node) -> bool:
    """Whether the node can run an image built for one of `platforms`, (os,
    architecture) pairs (none: any node). As in Swarm, an empty OS or
    architecture matches every node; names are compared as `node.platform.*`
    constraints compare them (x86_64 is amd64)."""
    if not platforms:
        return True
    os_name, arch = node.description.os.lower(), _norm_arch(node.description.arch)
    return any((not o or o.lower() == os_name) and (not a or _norm_arch(a) == arch) for o, a in platforms)


def platforms_text(platforms: Sequence[tuple[str, str]]) -> str:
    """ "linux/amd64, linux/arm64" for messages."""
    return ", ".join(f"{o or '*'}/{a or '*'}" for o, a in platforms)


# ---- placement preferences (issue 11) ----

SPREAD_ACCEPTED = "node.labels.<label> or engine.labels.<label>"


@dataclass(frozen=True)
class SpreadKey:
    """One `--placement-pref spread=...`: the label whose values split the
    nodes into groups."""

    descriptor: str
    field: str  # node.labels | engine.labels
    label: str

    def value(self, node: pb.Node) -> str:
        """The node's group: its label value; nodes without the label form
        their own group ("")."""
        labels = node.spec.labels if self.field == "node.labels" else node.description.engine_labels
        return labels.get(self.label, "")


def parse_spread(descriptor: str) -> SpreadKey:
    d = descriptor.strip()
    for prefix in ("node.labels.", "engine.labels."):
        if d.lower().startswith(prefix):
            label = d[len(prefix) :]
            if not label:
                raise ConstraintError(f"invalid placement preference spread={descriptor!r}: empty label name after {prefix}")
            return SpreadKey(d, prefix[:-1], label)
    raise ConstraintError(f"invalid placement preference spread={descriptor!r}: expected {SPREAD_ACCEPTED}")


def parse_preferences(spec: pb.TaskSpec) -> list[SpreadKey]:
    """A task spec's preferences; raises ConstraintError (validation refused
    such a spec already)."""
    out = []
    for p in spec.placement.preferences:
        if not p.spread:
            raise ConstraintError("invalid placement preference: only spread=<label> is supported")
        out.append(parse_spread(p.spread))
    return out
