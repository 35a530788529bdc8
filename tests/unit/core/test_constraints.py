"""Placement constraint parsing and matching."""

from __future__ import annotations

import pytest

from swarmlet.api import objects_pb2 as pb
from swarmlet.core.constraints import ConstraintError, matches, parse_constraint, parse_constraints


def node(
    nid: str = "n1",
    *,
    hostname: str = "Web-1",
    labels: dict | None = None,
    role: int = pb.NodeSpec.WORKER,
    os: str = "linux",
    arch: str = "x86_64",
) -> pb.Node:
    n = pb.Node(id=nid, role=role)
    n.spec.labels.update(labels or {})
    n.description.hostname = hostname
    n.description.os = os
    n.description.arch = arch
    return n


@pytest.mark.parametrize(
    "expr,field,label,equal,value",
    [
        ("node.labels.zone==a", "node.labels", "zone", True, "a"),
        ("node.labels.zone != a", "node.labels", "zone", False, "a"),
        ("  node.labels.com.example.tier == front  ", "node.labels", "com.example.tier", True, "front"),
        ("node.hostname==Web-1", "node.hostname", "", True, "web-1"),
        ("node.hostname!=web-2", "node.hostname", "", False, "web-2"),
        ("node.role==manager", "node.role", "", True, "manager"),
        ("node.role != Worker", "node.role", "", False, "worker"),
        ("node.id==abc123", "node.id", "", True, "abc123"),
        ("node.platform.os==Linux", "node.platform.os", "", True, "linux"),
        ("node.platform.arch==x86_64", "node.platform.arch", "", True, "amd64"),
        ("node.platform.arch!=aarch64", "node.platform.arch", "", False, "arm64"),
        ("engine.labels.storage==ssd", "engine.labels", "storage", True, "ssd"),
    ],
)
def test_parse_accepted_forms(expr, field, label, equal, value):
    c = parse_constraint(expr)
    assert (c.field, c.label, c.equal, c.value) == (field, label, equal, value)
    assert str(c) == expr.strip()


@pytest.mark.parametrize(
    "expr,fragment",
    [
        ("node.labels.zone=a", "no operator"),
        ("zone==a", "unknown key 'zone'"),
        ("node.name==x", "unknown key"),
        ("engine.labels.==ssd", "empty label name"),
        ("node.role==admin", "worker or manager"),
        ("node.labels.zone==", "empty value"),
        ("node.labels.==a", "empty label name"),
        ("==a", "empty key"),
        ("node.labels.a==b==c", "more than one operator"),
        ("node.labels.a!=b==c", "more than one operator"),
        ("", "no operator"),
    ],
)
def test_parse_errors_name_the_expression(expr, fragment):
    with pytest.raises(ConstraintError) as ei:
        parse_constraint(expr)
    msg = str(ei.value)
    assert fragment in msg
    assert repr(expr) in msg


def test_error_lists_accepted_keys_and_is_a_value_error():
    with pytest.raises(ValueError) as ei:
        parse_constraint("node.bogus==1")
    for key in ("node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch", "node.labels."):
        assert key in str(ei.value)


def test_labels_equal_and_not_equal():
    a = node(labels={"zone": "a"})
    b = node(labels={"zone": "b"})
    bare = node()
    eq = [parse_constraint("node.labels.zone==a")]
    ne = [parse_constraint("node.labels.zone!=a")]
    assert matches(eq, a) and not matches(eq, b) and not matches(eq, bare)
    # "not in zone a" includes nodes without the label, as in Swarm.
    assert not matches(ne, a) and matches(ne, b) and matches(ne, bare)


def test_label_values_are_exact():
    assert not matches([parse_constraint("node.labels.zone==A")], node(labels={"zone": "a"}))


def test_hostname_is_case_insensitive():
    n = node(hostname="Web-1")
    assert matches([parse_constraint("node.hostname==web-1")], n)
    assert matches([parse_constraint("node.hostname==WEB-1")], n)
    assert not matches([parse_constraint("node.hostname!=web-1")], n)


def test_role_id_platform():
    m = node("m1", role=pb.NodeSpec.MANAGER, arch="aarch64")
    w = node("w1", os="windows", arch="x86_64")
    assert matches([parse_constraint("node.role==manager")], m)
    assert not matches([parse_constraint("node.role==manager")], w)
    assert matches([parse_constraint("node.role==worker")], w)
    assert matches([parse_constraint("node.id==m1")], m)
    assert not matches([parse_constraint("node.id==m1")], w)
    assert matches([parse_constraint("node.platform.arch==arm64")], m)
    assert matches([parse_constraint("node.platform.arch==amd64")], w)
    assert matches([parse_constraint("node.platform.os==windows")], w)
    assert not matches([parse_constraint("node.platform.os==linux")], w)


def test_all_constraints_must_hold():
    cs = parse_constraints(["node.labels.zone==a", "node.role==worker"])
    assert matches(cs, node(labels={"zone": "a"}))
    assert not matches(cs, node(labels={"zone": "a"}, role=pb.NodeSpec.MANAGER))
    assert matches([], node())
