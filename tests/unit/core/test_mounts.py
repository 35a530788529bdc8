"""Mounts: the checks at validation (core/mounts.py) and the expansion of
their templates on the node."""

from __future__ import annotations

import pytest

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import mounts as mt
from swarmlet.core import templates as tpl
from swarmlet.core import validation

M = pb.Mount


def test_good_mounts_pass_and_report_their_targets() -> None:
    targets = mt.validate(
        [
            M(type=M.VOLUME, source="data-{{.Task.Slot}}", target="/data"),
            M(type=M.VOLUME, target="/anon"),  # an anonymous volume
            M(type=M.BIND, source="/srv/{{.Service.Name}}", target="/srv", read_only=True),
            M(type=M.TMPFS, target="/scratch/", tmpfs_size=8 << 20, tmpfs_mode=0o1770),
            M(type=M.VOLUME, source="nfs", target="/nfs", volume_driver="local", volume_options={"type": "nfs"}),
        ]
    )
    assert targets == ["/data", "/anon", "/srv", "/scratch", "/nfs"]


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        (M(type=M.VOLUME, source="v"), "needs a target"),
        (M(type=7, target="/x"), "unknown mount type 7"),  # type: ignore[arg-type]
        (M(type=M.VOLUME, source="vv", target="data"), "must be an absolute path"),
        (M(type=M.VOLUME, source="vv", target="/"), "root directory"),
        (M(type=M.BIND, target="/x"), "a bind mount needs a source"),
        (M(type=M.BIND, source="srv/x", target="/x"), "bind source 'srv/x' must be an absolute path"),
        (M(type=M.TMPFS, source="x", target="/x"), "takes no source"),
        (M(type=M.BIND, source="/s", target="/x", volume_nocopy=True), "are for volume mounts, not bind"),
        (M(type=M.VOLUME, source="vv", target="/x", tmpfs_size=1), "are for tmpfs mounts, not volume"),
        (M(type=M.VOLUME, source="bad name", target="/x"), "invalid volume name 'bad name'"),
        (M(type=M.VOLUME, source="x", target="/x"), "invalid volume name 'x'"),
        (M(type=M.VOLUME, source="{{.Task.Nope}}", target="/x"), "unknown template field"),
        (M(type=M.VOLUME, source="v-{{.Task.Slot", target="/x"), "unbalanced"),
        (M(type=M.TMPFS, target="/x", tmpfs_size=-1), "cannot be negative"),
        (M(type=M.TMPFS, target="/x", tmpfs_mode=0o17777), "not a permission mode"),
    ],
)
def test_bad_mounts_are_refused_naming_the_problem(mount: pb.Mount, message: str) -> None:
    with pytest.raises(errors.Invalid, match=message):
        mt.validate([mount])


def test_a_target_used_twice_is_refused() -> None:
    with pytest.raises(mt.InvalidMount, match="/data is used twice"):
        mt.validate([M(type=M.VOLUME, source="aa", target="/data"), M(type=M.TMPFS, target="/data/")])


def test_service_validation_checks_the_mounts() -> None:
    spec = pb.ServiceSpec(name="web")
    spec.task.container.image = "img"
    spec.task.container.mounts.add(type=M.VOLUME, source="aa")
    with pytest.raises(errors.Invalid, match="needs a target"):
        validation.validate_service_spec(spec)


def test_expand_fills_source_target_and_driver_options() -> None:
    ctx = tpl.Context(service_name="web", task_slot=3, node_hostname="h2", task_id="t9")
    m = M(
        type=M.VOLUME,
        source="{{.Service.Name}}-{{.Task.Slot}}",
        target="/data/{{.Node.Hostname}}",
        volume_options={"device": "/dev/{{.Task.ID}}"},
        read_only=True,
    )
    out = mt.expand(m, ctx)
    assert (out.source, out.target, dict(out.volume_options), out.read_only) == (
        "web-3",
        "/data/h2",
        {"device": "/dev/t9"},
        True,
    )
    assert m.source == "{{.Service.Name}}-{{.Task.Slot}}"  # the input is untouched
