"""convert.py: docker's JSON (API v1.41) <-> swarmlet's objects. Pure."""

from __future__ import annotations

import pytest

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import images as im
from swarmlet.engineapi import convert as cv

# What Debian's docker CLI 20.10 sends for
# `docker service create --name web --replicas 2 --env A=1 -p 8080:80 --limit-memory 64m img sleep 9`.
CLI_CREATE = {
    "Name": "web",
    "Labels": {},
    "TaskTemplate": {
        "ContainerSpec": {
            "Image": "img",
            "Args": ["sleep", "9"],
            "Env": ["A=1"],
            "Init": False,
            "StopGracePeriod": None,
            "DNSConfig": {},
            "Isolation": "default",
        },
        "Resources": {"Limits": {"MemoryBytes": 67108864}, "Reservations": {}},
        "RestartPolicy": {"Condition": "any", "Delay": 5000000000, "MaxAttempts": 0},
        "Placement": {},
        "ForceUpdate": 0,
        "Runtime": "container",
    },
    "Mode": {"Replicated": {"Replicas": 2}},
    "UpdateConfig": {
        "Parallelism": 1,
        "FailureAction": "pause",
        "Monitor": 5000000000,
        "MaxFailureRatio": 0,
        "Order": "stop-first",
    },
    "RollbackConfig": {
        "Parallelism": 1,
        "FailureAction": "pause",
        "Monitor": 5000000000,
        "MaxFailureRatio": 0,
        "Order": "stop-first",
    },
    "EndpointSpec": {
        "Mode": "vip",
        "Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"}],
    },
}


def test_cli_create_body_maps_every_field():
    spec = cv.service_spec_from_docker(CLI_CREATE)
    c = spec.task.container
    assert spec.name == "web" and spec.replicated.replicas == 2
    assert c.image == "img" and list(c.args) == ["sleep", "9"] and list(c.env) == ["A=1"]
    assert c.stop_grace_period == cv.DEFAULT_STOP_GRACE  # null: docker's default
    assert spec.task.resources.limits.memory_bytes == 64 * 1024 * 1024 and not spec.task.resources.HasField("reservations")
    assert spec.task.restart.condition == pb.RestartPolicy.ANY and spec.task.restart.delay == 5.0
    assert spec.update.monitor == 5.0 and spec.update.order == pb.UpdateConfig.STOP_FIRST
    (port,) = spec.endpoint.ports
    assert (port.target_port, port.published_port, port.publish_mode) == (80, 8080, pb.PortConfig.INGRESS)


def test_round_trip_out_and_in_is_identity():
    """What inspect shows is what update sends back: the spec survives."""
    spec = cv.service_spec_from_docker(CLI_CREATE)
    spec.task.container.has_healthcheck = True
    spec.task.container.healthcheck.test.extend(["CMD-SHELL", "true"])
    spec.task.container.healthcheck.interval = 2.5
    spec.task.container.mounts.add(type=pb.Mount.TMPFS, target="/t", tmpfs_size=1024)
    spec.task.container.secrets.add(secret_id="s1", secret_name="pw", file=pb.FileTarget(name="pw", uid="0", gid="0", mode=0o400))
    spec.task.placement.constraints.append("node.role==worker")
    spec.task.placement.preferences.add(spread="node.labels.zone")
    spec.task.placement.platforms.add(os="linux", architecture="amd64")
    spec.task.placement.platforms.add(os="linux", architecture="arm64")
    spec.networks.add(target="net1", aliases=["short"])
    spec.labels["a"] = "b"
    again = cv.service_spec_from_docker(cv.service_spec_to_docker(spec))
    assert again == spec


@pytest.mark.parametrize(
    "path,value,named",
    [
        (("TaskTemplate", "ContainerSpec", "Privileges"), {"NoNewPrivileges": True}, "TaskTemplate.ContainerSpec.Privileges"),
        (("TaskTemplate", "ContainerSpec", "Isolation"), "process", "TaskTemplate.ContainerSpec.Isolation"),
        (("TaskTemplate", "Runtime"), "plugin", "TaskTemplate.Runtime"),
        (
            ("TaskTemplate", "Placement", "Platforms"),
            [{"OS": "linux", "Variant": "v7"}],
            "TaskTemplate.Placement.Platforms[0].Variant",
        ),
        (("EndpointSpec", "Ports"), [{"Name": "http", "TargetPort": 80}], "EndpointSpec.Ports[0].Name"),
        (
            ("TaskTemplate", "ContainerSpec", "Mounts"),
            [{"Type": "bind", "Target": "/x", "BindOptions": {"Propagation": "shared"}}],
            "BindOptions",
        ),
        (("Networks",), [{"Target": "x"}], "ServiceSpec.Networks"),
    ],
)
def test_unsupported_fields_are_refused_by_name(path, value, named):
    body = _deep_copy(CLI_CREATE)
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(errors.Invalid, match=named.replace(".", r"\.").replace("[", r"\[").replace("]", r"\]")):
        cv.service_spec_from_docker(body)


def test_empty_values_of_unsupported_fields_ask_for_nothing():
    body = _deep_copy(CLI_CREATE)
    body["TaskTemplate"]["ContainerSpec"]["Privileges"] = None
    body["TaskTemplate"]["ContainerSpec"]["OpenStdin"] = False
    body["TaskTemplate"]["Placement"]["Platforms"] = []
    assert cv.service_spec_from_docker(body).name == "web"


def test_keys_match_without_regard_to_case():
    spec = cv.service_spec_from_docker(
        {"name": "x", "mode": {"replicated": {"replicas": 3}}, "taskTemplate": {"containerSpec": {"image": "i"}}}
    )
    assert (spec.name, spec.replicated.replicas, spec.task.container.image) == ("x", 3, "i")


def test_bad_values_are_named():
    with pytest.raises(errors.Invalid, match=r"RestartPolicy\.Condition: 'sometimes'"):
        cv.service_spec_from_docker({"TaskTemplate": {"RestartPolicy": {"Condition": "sometimes"}}})
    with pytest.raises(errors.Invalid, match="only one of Replicated, Global"):
        cv.service_spec_from_docker({"Mode": {"Replicated": {}, "Global": {}}})
    with pytest.raises(errors.Invalid, match="StopGracePeriod: expected a non-negative duration"):
        cv.service_spec_from_docker({"TaskTemplate": {"ContainerSpec": {"StopGracePeriod": "10s"}}})


def test_modes():
    assert cv.service_spec_from_docker({"Mode": {"Global": {}}}).WhichOneof("mode") == "global"
    job = cv.service_spec_from_docker({"Mode": {"ReplicatedJob": {"MaxConcurrent": 2, "TotalCompletions": 5}}})
    assert (job.replicated_job.max_concurrent, job.replicated_job.total_completions) == (2, 5)
    assert cv.service_spec_from_docker({}).replicated.replicas == 1


def test_service_out_has_dockers_shape():
    svc = pb.Service(id="s1", spec=cv.service_spec_from_docker(CLI_CREATE), spec_version=1)
    svc.meta.version, svc.meta.created_at = 7, 1_700_000_000.5
    svc.virtual_ips.add(network_id="n1", addr="10.0.0.2")
    svc.update_status.state = pb.UpdateStatus.UPDATING
    out = cv.service_to_docker(svc, {"n1": 24}, status=(1, 2, 0))
    assert out["Version"] == {"Index": 7} and out["CreatedAt"] == "2023-11-14T22:13:20.500000000Z"
    assert out["Endpoint"]["VirtualIPs"] == [{"NetworkID": "n1", "Addr": "10.0.0.2/24"}]
    assert out["UpdateStatus"]["State"] == "updating"
    assert out["ServiceStatus"] == {"RunningTasks": 1, "DesiredTasks": 2, "CompletedTasks": 0}
    assert out["Spec"]["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"] == 10 * cv.NS


def test_task_and_node_out():
    t = pb.Task(id="t1", service_id="s1", service_name="web", slot=2, node_id="n1", desired_state=pb.RUNNING)
    t.status.state, t.status.container_id = pb.RUNNING, "c1"
    t.service_labels["com.docker.stack.namespace"] = "app"
    t.networks.add(network_id="net", addr="10.0.0.5")
    out = cv.task_to_docker(t, {"net": 24})
    assert out["Status"]["State"] == "running" and out["DesiredState"] == "running" and out["Slot"] == 2
    assert out["NetworksAttachments"] == [{"Network": {"ID": "net"}, "Addresses": ["10.0.0.5/24"]}]
    assert cv.task_matches(t, {"label": ["com.docker.stack.namespace=app"]}, None, None, cv.task_name)
    assert not cv.task_matches(t, {"desired-state": ["shutdown"]}, None, None, cv.task_name)
    n = pb.Node(id="n1", role=pb.NodeSpec.MANAGER)
    n.spec.desired_role = pb.NodeSpec.MANAGER
    n.description.hostname, n.status.state = "h1", pb.NodeStatus.READY
    n.manager_status.leader, n.manager_status.reachability = True, pb.ManagerStatus.REACHABLE
    out = cv.node_to_docker(n)
    assert out["Spec"]["Role"] == "manager" and out["Status"]["State"] == "ready"
    assert out["ManagerStatus"]["Leader"] is True and out["ManagerStatus"]["Reachability"] == "reachable"
    assert cv.node_matches(n, {"role": ["manager"], "name": ["h"]}) and not cv.node_matches(n, {"role": ["worker"]})


def test_network_create_overlay_only():
    spec = cv.network_spec_from_docker(
        {
            "Name": "n",
            "Driver": "overlay",
            "Scope": "swarm",
            "CheckDuplicate": True,
            "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.9.0.0/24"}]},
        }
    )
    assert (spec.name, spec.driver, spec.subnet) == ("n", "overlay", "10.9.0.0/24")
    with pytest.raises(errors.Invalid, match="overlay networks only"):
        cv.network_spec_from_docker({"Name": "b", "Driver": "bridge"})
    with pytest.raises(errors.Invalid, match="NetworkCreate.Internal"):
        cv.network_spec_from_docker({"Name": "i", "Internal": True})
    with pytest.raises(errors.Invalid, match="NetworkCreate.EnableIPv6"):
        cv.network_spec_from_docker({"Name": "i", "EnableIPv6": True})


def test_filters_both_forms():
    assert cv.parse_filters('{"name":{"web":true,"x":false}}') == {"name": ["web"]}
    assert cv.parse_filters('{"name":["web"]}') == {"name": ["web"]}
    with pytest.raises(errors.Invalid, match="invalid filter 'bogus'"):
        cv.check_filter_keys({"bogus": ["1"]}, ("name",))
    with pytest.raises(errors.Invalid, match="not JSON"):
        cv.parse_filters("{")


def test_node_update_maps_to_availability_and_labels():
    n = pb.Node(id="n1")
    n.spec.labels["old"] = "1"
    req = cv.node_update_from_docker(n, {"Role": "worker", "Availability": "drain", "Labels": {"new": "2"}})
    assert req.set_availability and req.availability == pb.NodeSpec.DRAIN
    assert dict(req.label_add) == {"new": "2"} and list(req.label_rm) == ["old"]
    with pytest.raises(errors.Invalid, match="Role"):
        cv.node_update_from_docker(n, {"Role": "manager"})


def _deep_copy(d):
    import copy

    return copy.deepcopy(d)


def test_log_frames_are_what_docker_service_logs_parses():
    import struct

    from swarmlet.api import control_pb2 as cpb
    from swarmlet.engineapi import logs

    line = cpb.ServiceLogLine(task_id="t1", node_id="n1", stream="stderr", data=b"2024-01-01T00:00:00.000000000Z hello\n")
    out = logs.frame(line, "s1", timestamps=True, tty=False)
    kind, size = struct.unpack(">BxxxL", out[:8])
    assert kind == 2 and size == len(out) - 8
    assert out[8:] == (
        b"2024-01-01T00:00:00.000000000Z "
        b"com.docker.swarm.node.id=n1,com.docker.swarm.service.id=s1,com.docker.swarm.task.id=t1 hello\n"
    )
    assert logs.frame(cpb.ServiceLogLine(task_id="t", node_id="n", data=b"x"), "s", False, tty=True).endswith(b"task.id=t x\n")
    req, streams = logs.log_request("web", {"stdout": "1", "tail": "5", "follow": "true", "since": "1700000000.5"})
    assert (req.tail, req.follow, req.since, streams) == (5, True, 1700000000.5, {"stdout"})
    with pytest.raises(errors.Invalid, match="at least one stream"):
        logs.log_request("web", {})


def test_update_keeps_what_docker_cannot_express():
    current = cv.service_spec_from_docker(CLI_CREATE)
    current.task.container.pull = pb.PULL_ALWAYS
    current.update.canary, current.update.auto_promote = 1, True
    new = cv.service_spec_from_docker(cv.service_spec_to_docker(current))
    assert new.task.container.pull == pb.PULL_MISSING and new.update.canary == 0  # docker's JSON has no field for them
    cv.keep_swarmlet_only(new, current)
    assert new == current


def test_platforms_from_the_cli_resolution_are_kept():
    """docker's CLI copies /distribution's platforms into the spec."""
    body = _deep_copy(CLI_CREATE)
    body["TaskTemplate"]["Placement"]["Platforms"] = [{"Architecture": "amd64", "OS": "linux"}, {"OS": "linux"}]
    spec = cv.service_spec_from_docker(body)
    assert [(p.os, p.architecture) for p in spec.task.placement.platforms] == [("linux", "amd64"), ("linux", "")]
    shown = cv.service_spec_to_docker(spec)["TaskTemplate"]["Placement"]["Platforms"]
    assert shown == [{"Architecture": "amd64", "OS": "linux"}, {"Architecture": "", "OS": "linux"}]
    with pytest.raises(errors.Invalid, match=r"Platforms\[0\]\.OS: expected a string"):
        cv.service_spec_from_docker({**body, "TaskTemplate": {**body["TaskTemplate"], "Placement": {"Platforms": [{"OS": 1}]}}})


def test_distribution_in_dockers_shape():
    d = im.Distribution(
        media_type="application/vnd.docker.distribution.manifest.list.v2+json",
        digest="sha256:" + "a" * 64,
        size=1862,
        platforms=(
            im.DistributionPlatform(os="linux", architecture="amd64"),
            im.DistributionPlatform(os="linux", architecture="arm", variant="v7"),
            im.DistributionPlatform(os="windows", architecture="amd64", os_version="10.0.17763.1", os_features=("win32k",)),
        ),
    )
    assert cv.distribution_to_docker(d) == {
        "Descriptor": {"mediaType": d.media_type, "digest": d.digest, "size": 1862},
        "Platforms": [
            {"architecture": "amd64", "os": "linux"},
            {"architecture": "arm", "os": "linux", "variant": "v7"},
            {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.1", "os.features": ["win32k"]},
        ],
    }
