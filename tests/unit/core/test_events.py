"""core/events.py: the events of applied batches, and their filters."""

from __future__ import annotations

import pytest

from swarmlet import errors
from swarmlet.api import events_pb2 as epb
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import events as ev
from swarmlet.core import state as st


def apply(snap: st.Snapshot, *actions: spb.StoreAction, ts: float = 100.0) -> tuple[st.Snapshot, list[epb.Event]]:
    batch = spb.StoreBatch(actions=list(actions), timestamp=ts, request_id="r")
    new = snap.shallow_copy()
    assert st.apply_batch(new, batch).ok
    return new, [r.to_proto() for r in ev.derive(snap, new, batch)]


def service(name: str = "web", replicas: int = 2, image: str = "img:1", labels: dict[str, str] | None = None) -> pb.Service:
    return pb.Service(
        id=f"svc-{name}",
        spec=pb.ServiceSpec(
            name=name,
            labels=labels or {},
            task=pb.TaskSpec(container=pb.ContainerSpec(image=image)),
            replicated=pb.ReplicatedService(replicas=replicas),
        ),
        spec_version=1,
    )


def node(nid: str = "n1", host: str = "h1", state: int = pb.NodeStatus.READY) -> pb.Node:
    return pb.Node(
        id=nid,
        description=pb.NodeDescription(hostname=host),
        status=pb.NodeStatus(state=state),
        spec=pb.NodeSpec(availability=pb.NodeSpec.ACTIVE, labels={"zone": "a"}),
    )


def task(tid: str = "t1", slot: int = 1, node_id: str = "n1", state: int = pb.ASSIGNED) -> pb.Task:
    return pb.Task(
        id=tid,
        service_id="svc-web",
        service_name="web",
        slot=slot,
        node_id=node_id,
        desired_state=pb.RUNNING,
        status=pb.TaskStatus(state=state),
    )


def summary(events: list[epb.Event]) -> list[tuple[str, str, str]]:
    return [(e.type, e.action, e.id) for e in events]


@pytest.fixture
def base() -> st.Snapshot:
    snap, _ = apply(st.Snapshot(), st.put(node(), create=True), st.put(service(labels={"tier": "front"}), create=True))
    return snap


def test_positions_are_the_revision_and_the_place_in_the_batch(base: st.Snapshot) -> None:
    new, events = apply(base, st.put(task("t1"), create=True), st.put(task("t2", slot=2), create=True), ts=123.5)
    assert summary(events) == [("task", "create", "t1"), ("task", "create", "t2")]
    assert [(e.revision, e.index, e.time) for e in events] == [(new.version, 0, 123.5), (new.version, 1, 123.5)]
    t1 = events[0]
    assert t1.name == "web.1"
    assert dict(t1.attributes) == {
        "service": "web",
        "service.id": "svc-web",
        "slot": "1",
        "node.id": "n1",
        "node.name": "h1",
        "state": "assigned",
        "desired": "running",
    }
    assert dict(t1.labels) == {"tier": "front"}  # the service's labels, for label= filters


def test_an_object_touched_twice_in_a_batch_is_one_change(base: st.Snapshot) -> None:
    # Created and merged into in the same batch: one create, seen in its final state.
    status = pb.TaskStatus(state=pb.RUNNING, timestamp=1.0)
    _, events = apply(base, st.put(task("t1"), create=True), st.set_status("t1", status, "n1"))
    assert summary(events) == [("task", "create", "t1")]
    assert events[0].attributes["state"] == "running"


def test_task_state_desired_state_and_removal(base: st.Snapshot) -> None:
    snap, _ = apply(base, st.put(task("t1"), create=True))
    snap, events = apply(snap, st.set_status("t1", pb.TaskStatus(state=pb.FAILED, err="boom", exit_code=3), "n1"))
    assert summary(events) == [("task", "state", "t1")]
    a = events[0].attributes
    assert (a["state.old"], a["state.new"], a["err"], a["exit_code"]) == ("assigned", "failed", "boom", "3")
    snap, events = apply(snap, st.set_desired("t1", pb.SHUTDOWN))
    assert summary(events) == [("task", "update", "t1")]
    assert (events[0].attributes["desired.old"], events[0].attributes["desired.new"]) == ("running", "shutdown")
    snap, events = apply(snap, st.delete(spb.KIND_TASK, "t1"))
    assert summary(events) == [("task", "remove", "t1")]
    assert events[0].name == "web.1" and events[0].attributes["service"] == "web"


def test_a_pending_task_with_a_new_reason_is_a_state_event(base: st.Snapshot) -> None:
    t = task("t1", node_id="", state=pb.PENDING)
    t.status.err = "no suitable node (1 node: 1 drained)"
    snap, _ = apply(base, st.put(t, create=True))
    t2 = pb.Task()
    t2.CopyFrom(snap.tasks["t1"])
    t2.status.err = "no suitable node (1 node: 1 insufficient memory)"
    _, events = apply(snap, st.put(t2))
    assert summary(events) == [("task", "state", "t1")]
    assert events[0].attributes["err"] == "no suitable node (1 node: 1 insufficient memory)"


def test_service_scale_image_and_update_progress(base: st.Snapshot) -> None:
    svc = pb.Service()
    svc.CopyFrom(base.services["svc-web"])
    svc.spec.replicated.replicas = 5
    snap, events = apply(base, st.put(svc))
    assert summary(events) == [("service", "update", "svc-web")]
    assert dict(events[0].attributes) == {"replicas.old": "2", "replicas.new": "5"}

    svc = pb.Service()
    svc.CopyFrom(snap.services["svc-web"])
    svc.spec.task.container.image = "img:2"
    svc.spec_version = 2
    svc.update_status.state = pb.UpdateStatus.UPDATING
    svc.update_status.message = "update in progress"
    snap, events = apply(snap, st.put(svc))
    a = events[0].attributes
    assert (a["image.old"], a["image.new"], a["spec_version"]) == ("img:1", "img:2", "2")
    assert (a["updatestate.old"], a["updatestate.new"], a["updatestate"]) == ("none", "updating", "updating")

    # Only the allocator's virtual IPs changed: no event.
    svc = pb.Service()
    svc.CopyFrom(snap.services["svc-web"])
    svc.virtual_ips.add(network_id="net", addr="10.0.0.2")
    _, events = apply(snap, st.put(svc))
    assert events == []


def test_node_down_up_update_and_leader(base: st.Snapshot) -> None:
    down = pb.NodeStatus(state=pb.NodeStatus.DOWN, message="heartbeat failure")
    snap, events = apply(base, spb.StoreAction(node_status=spb.NodeStatusAction(node_id="n1", status=down)))
    assert summary(events) == [("node", "state", "n1")]
    assert (events[0].attributes["state.old"], events[0].attributes["state.new"]) == ("ready", "down")
    assert events[0].name == "h1"
    # A status refresh that keeps the state (a heartbeat) is no event.
    _, events = apply(snap, spb.StoreAction(node_status=spb.NodeStatusAction(node_id="n1", status=down)))
    assert events == []

    n = pb.Node()
    n.CopyFrom(snap.nodes["n1"])
    n.spec.availability = pb.NodeSpec.DRAIN
    snap, events = apply(snap, st.put(n))
    assert summary(events) == [("node", "update", "n1")]
    assert dict(events[0].attributes) == {"availability.old": "active", "availability.new": "drain"}

    _, events = apply(snap, spb.StoreAction(leader=spb.LeaderAction(node_id="n1", term=7)))
    assert summary(events) == [("node", "update", "n1")]
    assert dict(events[0].attributes) == {"leader": "true", "term": "7"}


def test_cluster_events_never_carry_secrets() -> None:
    c = pb.Cluster(
        id="c1", worker_token="SWLTKN-1-aaa-workersecret", manager_token="SWLTKN-1-aaa-mgrsecret", raft_secret=b"s" * 32
    )
    c.root_ca.key_pem = b"-----BEGIN PRIVATE KEY-----"
    snap, events = apply(st.Snapshot(), st.put(c, create=True))
    assert summary(events) == [("cluster", "create", "c1")]
    c2 = pb.Cluster()
    c2.CopyFrom(snap.clusters["c1"])
    c2.worker_token = "SWLTKN-1-aaa-newworkersecret"
    c2.raft_secret = b"t" * 32
    _, events = apply(snap, st.put(c2))
    assert dict(events[0].attributes) == {"worker_token": "rotated", "raft_secret": "rotated"}
    text = "".join(str(e) for e in events)
    assert "secret" not in text.replace("raft_secret", "") and "PRIVATE" not in text


def test_network_events(base: st.Snapshot) -> None:
    net = pb.Network(id="net1", spec=pb.NetworkSpec(name="backend", driver="overlay", labels={"team": "x"}))
    snap, events = apply(base, st.put(net, create=True))
    assert summary(events) == [("network", "create", "net1")] and events[0].name == "backend"
    assert dict(events[0].labels) == {"team": "x"}
    n2 = pb.Network()
    n2.CopyFrom(snap.networks["net1"])
    n2.subnet, n2.vni = "10.0.1.0/24", 4097
    snap, events = apply(snap, st.put(n2))
    assert dict(events[0].attributes) == {"subnet": "10.0.1.0/24", "vni": "4097"}
    _, events = apply(snap, st.delete(spb.KIND_NETWORK, "net1"))
    assert summary(events) == [("network", "remove", "net1")]


def test_generic_tables_say_only_create_update_remove() -> None:
    old, new = pb.Node(id="x"), pb.Node(id="x")
    assert ev._generic_changes(None, new) == [("create", {})]
    assert ev._generic_changes(old, None) == [("remove", {})]
    assert ev._generic_changes(old, new) == []


def test_derive_is_deterministic(base: st.Snapshot) -> None:
    batch = spb.StoreBatch(actions=[st.put(task("a"), create=True), st.put(task("b", slot=2), create=True)], timestamp=5.0)
    new = base.shallow_copy()
    st.apply_batch(new, batch)
    one = [e.to_proto().SerializeToString(deterministic=True) for e in ev.derive(base, new, batch)]
    two = [e.to_proto().SerializeToString(deterministic=True) for e in ev.derive(base, new, batch)]
    assert one == two


# ---- filters ----


def e(type_: str, action: str, id_: str = "x", name: str = "", **attrs: str) -> epb.Event:
    return epb.Event(type=type_, action=action, id=id_, name=name, attributes=attrs)


def test_filters_follow_docker_semantics() -> None:
    m = ev.matcher(ev.parse_filters(["type=service", "type=node", "event=create"]))
    assert m(e("service", "create")) and m(e("node", "create"))
    assert not m(e("service", "remove")) and not m(e("task", "create"))

    by_service = ev.matcher(ev.parse_filters(["service=web"]))
    assert by_service(e("service", "update", "svc1", "web"))
    assert by_service(e("task", "state", "t1", "web.1", service="web", **{"service.id": "svc1"}))
    assert not by_service(e("task", "state", "t2", "db.1", service="db"))

    by_node = ev.matcher(ev.parse_filters(["node=h2"]))
    assert by_node(e("node", "state", "n2", "h2"))
    assert by_node(e("task", "state", "t1", "web.1", **{"node.name": "h2"}))
    assert not by_node(e("task", "state", "t1", "web.1", **{"node.name": "h3"}))

    labelled = epb.Event(type="service", action="create", labels={"tier": "front"})
    assert ev.matcher(ev.parse_filters(["label=tier"]))(labelled)
    assert ev.matcher(ev.parse_filters(["label=tier=front"]))(labelled)
    assert not ev.matcher(ev.parse_filters(["label=tier=back"]))(labelled)

    assert ev.matcher(ev.parse_filters(["network=backend"]))(e("network", "create", "n", "backend"))
    # Records (the history's form) match like the messages they become.
    rec = ev.Record("service", "create", "svc1", "web", {}, {})
    assert m(rec) and by_service(rec) and not by_node(rec)
    # Progress markers always pass: they carry no change.
    assert m(epb.Event(revision=9, progress=True))


@pytest.mark.parametrize(
    "bad, message",
    [
        (["colour=red"], "invalid filter 'colour'"),
        (["type=container"], "invalid type filter 'container'"),
        (["event=die"], "invalid event filter 'die'"),
        (["service"], "expected key=value"),
        (["service="], "needs a value"),
    ],
)
def test_bad_filters_are_refused_with_the_reason(bad: list[str], message: str) -> None:
    with pytest.raises(errors.Invalid, match=message):
        ev.parse_filters(bad)


def test_resume_request_continues_strictly_after_a_position() -> None:
    req = epb.EventsRequest(since=50.0, until=90.0, filters=ev.parse_filters(["type=task"]))
    r = ev.resume_request(req, (12, 3))
    assert (r.resume, r.after_revision, r.after_index, r.since, r.until) == (True, 12, 3, 0.0, 90.0)
    assert list(r.filters) == list(req.filters)
