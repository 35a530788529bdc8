"""core/images.py: references, the registry's failures, pinning without a registry (issue 9)."""

from __future__ import annotations

import pytest

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import images as im
from swarmlet.core import state as st

D = "sha256:" + "a" * 64


def test_parse_forms() -> None:
    r = im.parse("busybox")
    assert (r.domain, r.path, r.tag, r.digest, r.tagged) == ("docker.io", "library/busybox", "", "", "busybox:latest")
    r = im.parse(f"reg.example:5000/team/app:v1@{D}")
    assert (r.domain, r.path, r.tag, r.digest) == ("reg.example:5000", "team/app", "v1", D)
    assert r.name == "reg.example:5000/team/app"
    assert im.pinned(im.parse("app"), D) == f"app:latest@{D}"
    assert im.auth_key(im.parse("app")) == im.DOCKER_HUB_AUTH_KEY
    assert im.auth_key(im.parse("localhost:5000/app")) == "localhost:5000"


@pytest.mark.parametrize(
    "message, kind",
    [
        ('Get "http://x.invalid:5000/v2/": dial tcp: lookup x.invalid on 1.1.1.1:53: no such host', im.UNKNOWN_HOST),
        ('Get "http://198.18.0.250:5000/v2/": dial tcp 198.18.0.250:5000: connect: connection refused', im.UNREACHABLE),
        ('Head "http://r:5000/v2/app/manifests/v1": no basic auth credentials', im.DENIED),
        ("manifest unknown: manifest unknown", im.NOT_FOUND),
    ],
)
def test_classify_registry_error(message: str, kind: str) -> None:
    assert im.classify_registry_error(message) == kind


def _snap_with(holder_images: dict[str, list[pb.ImageRecord]]) -> st.Snapshot:
    snap = st.Snapshot()
    for name, recs in holder_images.items():
        n = pb.Node(id=name, description=pb.NodeDescription(hostname=name, image_records=recs))
        n.status.state = pb.NodeStatus.READY
        n.api_addr = f"{name}:4244"
        snap.nodes[n.id] = n
    return snap


def test_pin_without_registry() -> None:
    snap = _snap_with({"h2": [pb.ImageRecord(id="sha256:" + "b" * 64, tags=["reg:5000/app:1"])]})
    ref = im.parse("reg:5000/app:1")
    res = im.pin_without_registry(snap, ref, "dial tcp: connect: connection refused")
    assert res.image_id == "sha256:" + "b" * 64 and "on h2" in res.warning
    # Denied: unpinned, whatever engines hold.
    res = im.pin_without_registry(snap, ref, "no basic auth credentials")
    assert res.image_id == "" and "--with-registry-auth" in res.warning
    # Nowhere: refusals that name the cause.
    ghost = im.parse("reg:5000/ghost:1")
    with pytest.raises(errors.FailedPrecondition, match="cannot be reached"):
        im.pin_without_registry(snap, ghost, "connection refused")
    with pytest.raises(errors.Invalid, match="unknown registry host"):
        im.pin_without_registry(snap, ghost, "lookup reg: no such host")
    with pytest.raises(errors.NotFound, match="no digest"):
        im.pin_without_registry(snap, im.parse(f"reg:5000/ghost@{D}"), "manifest unknown")


def test_sources_and_credentials_only_for_the_nodes_tasks() -> None:
    rec = pb.ImageRecord(id="sha256:" + "c" * 64, tags=["app:1"], digests=[f"app@{D}"])
    snap = _snap_with({"h1": [rec], "h2": []})
    auth = pb.RegistryAuth(username="u", password="p")
    snap.services["s1"] = pb.Service(id="s1", registry_auth=auth)
    snap.services["s2"] = pb.Service(id="s2", registry_auth=pb.RegistryAuth(username="other", password="q"))
    t = pb.Task(id="t1", service_id="s1", node_id="h2", desired_state=pb.RUNNING)
    t.spec.container.image = f"app:1@{D}"
    sources = im.image_sources(snap, "h2", [t])
    assert sources == [(f"app:1@{D}", rec.id, ["h1:4244"])]
    assert dict(im.service_auths(snap, [t])) == {"s1": auth}
    assert not im.redacted(snap.services["s1"]).HasField("registry_auth")
