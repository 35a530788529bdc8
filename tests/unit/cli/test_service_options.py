"""Issue 11's flags -> ServiceSpec (pure): container options on create and
update, jobs, placement, --env-file, the -add/-rm flags of update with
docker's semantics, and the service/node listing filters."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.listing import filter_nodes, filter_services
from swarmlet.cli.service_flags import ContainerCreateFlags, ContainerFlags, ContainerUpdateFlags, RestartFlags, UpdatePolicy
from swarmlet.cli.service_options import read_env_files
from swarmlet.cli.service_spec import apply_flags, build_spec


def create(**kw: object) -> pb.ServiceSpec:
    container = {k: v for k, v in kw.items() if k in ContainerFlags.__dataclass_fields__}
    rest = {k: v for k, v in kw.items() if k in ContainerCreateFlags.__dataclass_fields__}
    other = {k: v for k, v in kw.items() if k not in container and k not in rest}
    return build_spec(image="busybox", container=ContainerFlags(**container), create_opts=ContainerCreateFlags(**rest), **other)  # type: ignore[arg-type]


def update(spec: pb.ServiceSpec, **kw: object) -> pb.ServiceSpec:
    container = {k: v for k, v in kw.items() if k in ContainerFlags.__dataclass_fields__}
    changes = {k: v for k, v in kw.items() if k in ContainerUpdateFlags.__dataclass_fields__}
    other = {k: v for k, v in kw.items() if k not in container and k not in changes}
    return apply_flags(spec, container=ContainerFlags(**container), changes=ContainerUpdateFlags(**changes), **other)  # type: ignore[arg-type]


def test_create_container_options() -> None:
    s = create(
        user="app",
        workdir="/srv",
        hostname="{{.Service.Name}}",
        init=True,
        read_only=True,
        tty=True,
        stop_signal="quit",
        cap_add=["net_admin", "CAP_NET_ADMIN"],
        cap_drop=["chown"],
        log_driver="json-file",
        log_opt=["max-size=1m"],
        limit_pids=50,
        replicas_max_per_node=2,
        health_start_interval="500ms",
        sysctl=["net.ipv4.ip_forward=1"],
        ulimit=["nofile=100:200", "nproc=10"],
        group=["audio", "audio", "video"],
        dns=["10.0.0.53"],
        dns_search=["example.com"],
        dns_option=["ndots:2"],
        host=["db:10.0.0.1", "v6:fd00::1"],
        placement_pref=["spread=node.labels.zone"],
        generic_resource=["gpu=1"],
    )
    c = s.task.container
    assert (c.user, c.dir, c.hostname, c.init, c.read_only, c.tty, c.stop_signal) == (
        "app",
        "/srv",
        "{{.Service.Name}}",
        True,
        True,
        True,
        "SIGQUIT",
    )
    assert list(c.cap_add) == ["CAP_NET_ADMIN"] and list(c.cap_drop) == ["CAP_CHOWN"]
    assert s.task.log_driver.name == "json-file" and dict(s.task.log_driver.options) == {"max-size": "1m"}
    assert s.task.resources.limits.pids == 50 and s.task.placement.max_replicas == 2
    assert c.healthcheck.start_interval == 0.5 and c.has_healthcheck
    assert dict(c.sysctls) == {"net.ipv4.ip_forward": "1"}
    assert [(u.name, u.soft, u.hard) for u in c.ulimits] == [("nofile", 100, 200), ("nproc", 10, 10)]
    assert list(c.groups) == ["audio", "video"]
    assert (list(c.dns_config.nameservers), list(c.dns_config.search), list(c.dns_config.options)) == (
        ["10.0.0.53"],
        ["example.com"],
        ["ndots:2"],
    )
    assert list(c.hosts) == ["10.0.0.1 db", "fd00::1 v6"]
    assert [p.spread for p in s.task.placement.preferences] == ["node.labels.zone"]
    assert [(g.kind, g.discrete_value) for g in s.task.resources.reservations.generic] == [("gpu", 1)]


@pytest.mark.parametrize(
    "kw,hint",
    [
        ({"cap_add": ["CAP_FLY"]}, "--cap-add"),
        ({"ulimit": ["nofile=lots"]}, "--ulimit"),
        ({"ulimit": ["nofile"]}, "--ulimit"),
        ({"sysctl": ["net.core.somaxconn"]}, "--sysctl"),
        ({"sysctl": ["kernel.panic=1"]}, "--sysctl"),
        ({"stop_signal": "SIGWHAT"}, "--stop-signal"),
        ({"host": ["db"]}, "--host"),
        ({"host": ["db:not-an-ip"]}, "--host"),
        ({"placement_pref": ["pack=node.labels.zone"]}, "--placement-pref"),
        ({"generic_resource": ["gpu=one"]}, "--generic-resource"),
        ({"log_opt": ["a=b"]}, "--log-opt"),
        ({"mode": "batch"}, "--mode"),
        ({"mode": "global-job", "replicas": 2}, "--replicas"),
        ({"mode": "replicated", "max_concurrent": 2}, "--max-concurrent"),
        ({"mode": "replicated-job", "update": UpdatePolicy(parallelism=2)}, "--update-*"),
    ],
)
def test_create_refuses_bad_values_naming_the_flag(kw: dict[str, object], hint: str) -> None:
    with pytest.raises(typer.BadParameter) as e:
        create(**kw)
    assert e.value.param_hint == hint


def test_jobs() -> None:
    s = create(mode="replicated-job", replicas=5, max_concurrent=2)
    assert (s.replicated_job.total_completions, s.replicated_job.max_concurrent) == (5, 2)
    # Jobs restart on failure by default; the condition given wins.
    assert s.task.restart.condition == pb.RestartPolicy.ON_FAILURE
    s = create(mode="replicated-job", replicas=3)
    assert s.replicated_job.max_concurrent == 3  # default: --replicas
    s = create(mode="global-job", restart=RestartFlags(condition="none"))
    assert s.WhichOneof("mode") == "global_job" and s.task.restart.condition == pb.RestartPolicy.NONE
    # Update: --replicas is the completions of a replicated job.
    u = update(create(mode="replicated-job", replicas=2), replicas=7, max_concurrent=3)
    assert (u.replicated_job.total_completions, u.replicated_job.max_concurrent) == (7, 3)
    with pytest.raises(typer.BadParameter, match="not supported for jobs"):
        update(create(mode="global-job"), update=UpdatePolicy(parallelism=2))


def test_env_file(tmp_path: Path) -> None:
    f = tmp_path / "env"
    f.write_text("# a comment\n\nA=from-file\nB=from-file\nFROM_ENV\n")
    lines = read_env_files([str(f)])
    s = build_spec(
        image="busybox",
        env=["B=from-flag"],
        env_file_lines=lines,
        environ={"FROM_ENV": "yes"},
        create_opts=ContainerCreateFlags(env_file=[str(f)]),
    )
    assert list(s.task.container.env) == ["A=from-file", "FROM_ENV=yes", "B=from-flag"]
    bad = tmp_path / "bad"
    bad.write_text("MY VAR=1\n")
    with pytest.raises(typer.BadParameter, match="contains whitespaces"):
        read_env_files([str(bad)])
    with pytest.raises(typer.BadParameter, match="cannot read"):
        read_env_files([str(tmp_path / "missing")])


def test_update_capabilities_as_docker() -> None:
    s = create(cap_add=["NET_ADMIN"], cap_drop=["CHOWN"])
    # Dropping one that was added only un-adds it; adding a dropped one only un-drops it.
    u = update(s, cap_drop=["NET_ADMIN", "KILL"], cap_add=["CHOWN", "SYS_TIME"])
    assert list(u.task.container.cap_add) == ["CAP_SYS_TIME"]
    assert list(u.task.container.cap_drop) == ["CAP_KILL"]
    # ALL resets a list.
    u = update(u, cap_add=["ALL"])
    assert list(u.task.container.cap_add) == []


def test_update_lists_remove_then_add() -> None:
    s = create(
        sysctl=["net.ipv4.ip_forward=1"],
        ulimit=["nofile=10"],
        group=["a", "b"],
        dns=["10.0.0.1"],
        host=["db:10.0.0.1", "cache:10.0.0.2"],
        placement_pref=["spread=node.labels.zone"],
        generic_resource=["gpu=1"],
        labels=["keep=1", "drop=1"],
        container_labels=["c=1"],
    )
    s.task.container.hosts.append("10.0.0.3 db alias")
    u = update(
        s,
        sysctl_rm=["net.ipv4.ip_forward"],
        sysctl_add=["net.core.somaxconn=100"],
        ulimit_add=["nproc=5"],
        ulimit_rm=["nofile"],
        group_rm=["a"],
        group_add=["c"],
        dns_rm=["10.0.0.1"],
        dns_add=["10.0.0.2"],
        host_rm=["db:10.0.0.1", "alias"],
        host_add=["web:10.0.0.9"],
        placement_pref_rm=["spread=node.labels.zone"],
        placement_pref_add=["spread=node.labels.rack"],
        generic_resource_rm=["gpu"],
        generic_resource_add=["fpga=2"],
        label_rm=["drop"],
        label_add=["new=2"],
        container_label_rm=["c"],
        container_label_add=["d=4"],
        entrypoint="/bin/sh -c",
        endpoint_mode="dnsrr",
        user="nobody",
    )
    c = u.task.container
    assert dict(c.sysctls) == {"net.core.somaxconn": "100"}
    assert [x.name for x in c.ulimits] == ["nproc"]
    assert list(c.groups) == ["b", "c"]
    assert list(c.dns_config.nameservers) == ["10.0.0.2"]
    # db goes only from the line of 10.0.0.1; alias from every line.
    assert list(c.hosts) == ["10.0.0.2 cache", "10.0.0.3 db", "10.0.0.9 web"]
    assert [p.spread for p in u.task.placement.preferences] == ["node.labels.rack"]
    assert [(g.kind, g.discrete_value) for g in u.task.resources.reservations.generic] == [("fpga", 2)]
    assert dict(u.labels) == {"keep": "1", "new": "2"} and dict(c.labels) == {"d": "4"}
    assert list(c.command) == ["/bin/sh", "-c"] and c.user == "nobody"
    assert u.endpoint.mode == pb.EndpointSpec.DNSRR
    # The original is untouched.
    assert dict(s.task.container.sysctls) == {"net.ipv4.ip_forward": "1"}


def test_update_published_ports() -> None:
    s = build_spec(image="busybox")
    s.endpoint.ports.add(target_port=80, published_port=30000)
    s.endpoint.ports.add(target_port=53, published_port=53, protocol=pb.PortConfig.UDP)
    s.endpoint.ports.add(target_port=81, published_port=81, publish_mode=pb.PortConfig.HOST)
    u = update(s, publish_rm=["80", "81"], publish_add=["8080:8080", "53:53/udp", "9000-9001:9000-9001/sctp"])
    got = [(p.published_port, p.target_port, p.protocol, p.publish_mode) for p in u.endpoint.ports]
    assert got == [
        (53, 53, pb.PortConfig.UDP, pb.PortConfig.INGRESS),
        (81, 81, pb.PortConfig.TCP, pb.PortConfig.HOST),  # --publish-rm 81 names an ingress port
        (8080, 8080, pb.PortConfig.TCP, pb.PortConfig.INGRESS),
        (9000, 9000, pb.PortConfig.SCTP, pb.PortConfig.INGRESS),
        (9001, 9001, pb.PortConfig.SCTP, pb.PortConfig.INGRESS),
    ]
    u = update(u, publish_rm=["target=81,mode=host"])
    assert 81 not in [p.target_port for p in u.endpoint.ports]


def _svc(sid: str, name: str, mode: str = "replicated", **labels: str) -> pb.Service:
    s = pb.Service(id=sid)
    s.spec.name = name
    s.spec.labels.update(labels)
    if mode == "global":
        getattr(s.spec, "global").SetInParent()
    elif mode == "replicated-job":
        s.spec.replicated_job.total_completions = 1
    else:
        s.spec.replicated.replicas = 1
    return s


def test_service_filters() -> None:
    svcs = [
        _svc("abc1", "web", tier="front"),
        _svc("abd2", "worker", "global"),
        _svc("xyz3", "batch", "replicated-job", tier="back"),
    ]

    def names(*filters: str) -> list[str]:
        keep = filter_services(filters)
        return [s.spec.name for s in svcs if keep(s)]

    assert names() == ["web", "worker", "batch"]
    assert names("id=ab") == ["web", "worker"]
    assert names("name=w") == ["web", "worker"]
    assert names("label=tier") == ["web", "batch"]
    assert names("label=tier=back") == ["batch"]
    assert names("mode=global", "mode=replicated-job") == ["worker", "batch"]
    assert names("name=w", "mode=replicated") == ["web"]
    for bad in ("color=red", "mode=batch", "oops"):
        with pytest.raises(typer.BadParameter):
            filter_services([bad])


def test_node_filters() -> None:
    def node(nid: str, host: str, manager: bool, labels: dict[str, str], engine: dict[str, str]) -> pb.Node:
        n = pb.Node(id=nid, role=pb.NodeSpec.MANAGER if manager else pb.NodeSpec.WORKER)
        n.description.hostname = host
        n.spec.labels.update(labels)
        n.description.engine_labels.update(engine)
        return n

    nodes = [
        node("n1", "h1", True, {"zone": "a"}, {}),
        node("n2", "h2", False, {}, {"disk": "ssd"}),
        node("m3", "w3", False, {"zone": "b"}, {"disk": "hdd"}),
    ]

    def ids(*filters: str) -> list[str]:
        keep = filter_nodes(filters)
        return [n.id for n in nodes if keep(n)]

    assert ids("role=manager") == ["n1"]
    assert ids("role=worker", "name=h") == ["n2"]
    assert ids("id=n") == ["n1", "n2"]
    assert ids("node.label=zone") == ["n1", "m3"]
    assert ids("node.label=zone=b") == ["m3"]
    assert ids("label=disk=ssd") == ["n2"]
    assert ids("membership=accepted") == ["n1", "n2", "m3"]
    assert ids("membership=pending") == []
    for bad in ("role=boss", "membership=maybe", "zone=a"):
        with pytest.raises(typer.BadParameter):
            filter_nodes([bad])
