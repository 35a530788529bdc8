"""Issue 11's checks on user input (core/service_options.py via
validation.py), published ports (core/ports.py) and templates in a task's
fields: bad input gets an error naming the flag and the value."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import ports, templates
from swarmlet.core import service_options as so
from swarmlet.core import state as st
from swarmlet.core import validation as v
from tests.core_sim import Sim


def spec(**container: object) -> pb.ServiceSpec:
    s = pb.ServiceSpec(name="web")
    s.replicated.replicas = 1
    s.task.container.image = "busybox:latest"
    for k, val in container.items():
        field = getattr(s.task.container, k)
        if isinstance(val, list):
            field.extend(val)
        elif isinstance(val, dict):
            field.update(val)
        else:
            setattr(s.task.container, k, val)
    return s


def test_every_option_set_passes() -> None:
    s = spec(
        user="1000:100",
        dir="/srv",
        hostname="{{.Service.Name}}-{{.Task.Slot}}",
        init=True,
        read_only=True,
        cap_add=["CAP_NET_ADMIN", "ALL"],
        cap_drop=["CAP_CHOWN"],
        sysctls={"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000"},
        stop_signal="SIGQUIT",
        groups=["audio", "123"],
        tty=True,
        hosts=["10.0.0.1 db db.local"],
        env=["WHERE={{.Node.Hostname}}", 'TIER={{index .Service.Labels "tier"}}'],
    )
    s.task.container.ulimits.add(name="nofile", soft=1024, hard=2048)
    s.task.container.dns_config.nameservers.append("10.0.0.53")
    s.task.container.dns_config.search.append("example.com")
    s.task.container.dns_config.options.append("ndots:2")
    s.task.container.healthcheck.start_interval = 1.0
    s.task.log_driver.name = "json-file"
    s.task.log_driver.options["max-size"] = "1m"
    s.task.resources.limits.pids = 100
    s.task.resources.reservations.generic.add(kind="gpu", discrete_value=1)
    s.task.placement.preferences.add(spread="node.labels.zone")
    s.task.placement.max_replicas = 2
    v.validate_service_spec(s)


BAD: list[tuple[Callable[[pb.ServiceSpec], object], str]] = [
    (lambda s: s.task.container.cap_add.append("CAP_FLY"), "unknown capability 'CAP_FLY'"),
    (lambda s: s.task.container.cap_add.append("net_admin"), "not in its canonical form"),
    (
        lambda s: (s.task.container.cap_add.append("CAP_KILL"), s.task.container.cap_drop.append("CAP_KILL")),
        "both added and dropped",
    ),
    (lambda s: s.task.container.ulimits.add(name="files", soft=1, hard=1), "invalid ulimit 'files'"),
    (lambda s: s.task.container.ulimits.add(name="nofile", soft=10, hard=5), "soft limit 10 is above the hard limit 5"),
    (lambda s: s.task.container.sysctls.update({"kernel.hostname": "x"}), "kernel.hostname is not namespaced"),
    (lambda s: s.task.container.sysctls.update({"net ipv4": "1"}), "invalid sysctl 'net ipv4'"),
    (lambda s: s.task.container.sysctls.update({"net.ipv4.ip_forward": " "}), "empty value"),
    (lambda s: s.task.container.env.append("X={{.Node.Name}}"), r"--env: unknown template field \{\{.Node.Name\}\}"),
    (lambda s: setattr(s.task.container, "hostname", "{{.Task.Oops}}"), "--hostname: unknown template field"),
    (lambda s: setattr(s.task.container, "hostname", "bad_host!"), "not a valid host name"),
    (lambda s: setattr(s.task.container, "dir", "relative"), "--workdir: 'relative' is not an absolute path"),
    (lambda s: setattr(s.task.container, "stop_signal", "SIGNOPE"), "invalid stop signal 'SIGNOPE'"),
    (lambda s: setattr(s.task.container, "user", "a b"), "--user: invalid user or group"),
    (lambda s: s.task.container.dns_config.nameservers.append("dns.example"), "--dns: 'dns.example' is not an IP address"),
    (lambda s: s.task.container.hosts.append("db 10.0.0.1"), "'db' is not an IP address"),
    (lambda s: s.task.log_driver.options.update({"a": "b"}), "--log-opt needs --log-driver"),
    (lambda s: setattr(s.task.resources.limits, "pids", -1), "--limit-pids cannot be negative"),
    (lambda s: s.task.resources.reservations.generic.add(kind="gpu", named_value="x"), "a reservation is a positive count"),
    (lambda s: s.task.placement.preferences.add(spread="node.hostname"), "--placement-pref: invalid placement preference"),
    (
        lambda s: getattr(s, "global").SetInParent() or setattr(s.task.placement, "max_replicas", 2),
        "--replicas-max-per-node is for",
    ),
]


@pytest.mark.parametrize("change,words", BAD)
def test_bad_options_are_refused_with_the_flag_named(change: Callable[[pb.ServiceSpec], object], words: str) -> None:
    s = spec()
    change(s)
    with pytest.raises(v.InvalidSpec, match=words):
        v.validate_service_spec(s)


def test_names_are_normalised_as_docker_spells_them() -> None:
    assert so.capability("net_admin") == "CAP_NET_ADMIN"
    assert so.capability("CAP_SYS_ADMIN") == "CAP_SYS_ADMIN"
    assert so.capability("all") == "ALL"
    assert so.signal_name("quit") == "SIGQUIT"
    assert so.signal_name("9") == "9"
    assert so.signal_name("SIGRTMIN+3") == "SIGRTMIN+3"
    u = so.parse_ulimit("nproc=64")
    assert (u.name, u.soft, u.hard) == ("nproc", 64, 64)
    for bad in ("nofile", "nofile=", "nofile=a:b", "nofile=-5"):
        with pytest.raises(so.OptionError):
            so.parse_ulimit(bad)
    assert so.host_entry("db", "10.0.0.1") == "10.0.0.1 db"


def test_generic_resources_no_node_has_is_unschedulable() -> None:
    sim = Sim()
    sim.add_node("n1")
    s = spec()
    s.task.resources.reservations.generic.add(kind="gpu", discrete_value=1)
    with pytest.raises(v.Unschedulable, match="no node advertises it"):
        v.check_schedulable(s, sim.snap)
    n = pb.Node()
    n.CopyFrom(sim.snap.nodes["n1"])
    n.description.resources.generic.add(kind="gpu", discrete_value=1)
    sim.apply([st.put(n)])
    v.check_schedulable(s, sim.snap)
    s.task.resources.reservations.generic[0].discrete_value = 2
    with pytest.raises(v.Unschedulable, match="the most any node has is 1"):
        v.check_schedulable(s, sim.snap)


# ---- published ports ----


def _svc(sim: Sim, sid: str, *port_specs: tuple[int, int, int]) -> None:
    s = spec()
    s.name = sid
    for published, proto, mode in port_specs:
        s.endpoint.ports.add(target_port=80, published_port=published, protocol=proto, publish_mode=mode)  # type: ignore[arg-type]
    sim.apply([st.put(pb.Service(id=sid, spec=s), create=True)])


TCP, UDP, SCTP = pb.PortConfig.TCP, pb.PortConfig.UDP, pb.PortConfig.SCTP
ING, HOST = pb.PortConfig.INGRESS, pb.PortConfig.HOST


def test_ports_without_published_get_one_from_the_dynamic_range() -> None:
    sim = Sim()
    _svc(sim, "a", (30000, TCP, ING), (30001, UDP, HOST))
    s = spec()
    s.endpoint.ports.add(target_port=80)
    s.endpoint.ports.add(target_port=81, protocol=UDP)
    s.endpoint.ports.add(target_port=82, published_port=30002)
    s.endpoint.ports.add(target_port=9000, protocol=SCTP)
    v.prepare_service_networking(s, sim.snap)
    assert [(p.published_port, p.protocol) for p in s.endpoint.ports] == [(30001, TCP), (30000, UDP), (30002, TCP), (30000, SCTP)]


def _ports(s: pb.ServiceSpec) -> list[tuple[int, int, int, int]]:
    return [(p.published_port, p.target_port, p.protocol, p.publish_mode) for p in s.endpoint.ports]


def test_an_update_naming_only_the_target_keeps_the_port_the_service_holds() -> None:
    # As Swarm: a re-deployed stack (or docker's API) sends "6379" again;
    # the port assigned at create stays, though 30000 is free by now.
    sim = Sim()
    s = spec()
    s.name = "a"
    for published, target, proto in ((30001, 6379, TCP), (30002, 6379, TCP), (30001, 53, UDP), (8080, 80, TCP)):
        s.endpoint.ports.add(target_port=target, published_port=published, protocol=proto)  # type: ignore[arg-type]
    sim.apply([st.put(pb.Service(id="a", spec=s), create=True)])
    new = spec()
    new.name = "a"
    new.endpoint.ports.add(target_port=6379)
    new.endpoint.ports.add(target_port=6379)  # the same target twice: each keeps one port
    new.endpoint.ports.add(target_port=53, protocol=UDP, publish_mode=HOST)  # another mode: another port
    new.endpoint.ports.add(target_port=80)  # 8080 was published by name, not assigned from the range
    v.prepare_service_networking(new, sim.snap, service_id="a")
    assert _ports(new) == [(30001, 6379, TCP, ING), (30002, 6379, TCP, ING), (30000, 53, UDP, HOST), (30000, 80, TCP, ING)]
    # A port the new spec publishes by name is not handed out again.
    named = spec()
    named.name = "a"
    named.endpoint.ports.add(target_port=6379)
    named.endpoint.ports.add(target_port=6379, published_port=30001)
    v.prepare_service_networking(named, sim.snap, service_id="a")
    assert _ports(named) == [(30002, 6379, TCP, ING), (30001, 6379, TCP, ING)]
    # Another service (a create) names the same target: it gets a free port.
    other = spec()
    other.endpoint.ports.add(target_port=6379)
    v.prepare_service_networking(other, sim.snap)
    assert _ports(other) == [(30000, 6379, TCP, ING)]


def test_the_dynamic_range_can_run_out() -> None:
    taken = [pb.Service(id=f"s{i}") for i in range(1)]
    for port in range(ports.DYNAMIC_FIRST, ports.DYNAMIC_LAST + 1):
        taken[0].spec.endpoint.ports.add(target_port=1, published_port=port)
    p = [pb.PortConfig(target_port=80)]
    with pytest.raises(errors.FailedPrecondition, match="no published port left in 30000-32767"):
        ports.assign(p, taken)


@pytest.mark.parametrize(
    "theirs,mine,clash",
    [
        ((8080, TCP, ING), (8080, TCP, ING), True),
        ((8080, TCP, HOST), (8080, TCP, ING), True),
        ((8080, TCP, ING), (8080, TCP, HOST), True),
        ((8080, TCP, HOST), (8080, TCP, HOST), False),  # per node: the scheduler keeps them apart
        ((8080, UDP, ING), (8080, TCP, ING), False),
        ((8080, SCTP, ING), (8080, SCTP, ING), True),
    ],
)
def test_port_conflicts(theirs: tuple[int, int, int], mine: tuple[int, int, int], clash: bool) -> None:
    sim = Sim()
    _svc(sim, "other", theirs)
    s = spec()
    s.endpoint.ports.add(target_port=80, published_port=mine[0], protocol=mine[1], publish_mode=mine[2])  # type: ignore[arg-type]
    if clash:
        with pytest.raises(errors.FailedPrecondition, match=f"port {mine[0]}/.* is already published by service 'other'"):
            v.prepare_service_networking(s, sim.snap)
    else:
        v.prepare_service_networking(s, sim.snap)


# ---- templates in a task's fields ----


def test_expand_task_fills_env_and_hostname_for_the_node() -> None:
    t = pb.Task(id="t1", service_id="s1", service_name="web", slot=2)
    t.service_labels["tier"] = "front"
    c = t.spec.container
    c.env.extend(["PLAIN=1", "NODE={{.Node.Hostname}}", 'TIER={{index .Service.Labels "tier"}}', "NAME={{.Task.Name}}"])
    c.hostname = "{{.Service.Name}}-{{.Task.Slot}}-{{.Node.Platform.OS}}"
    out = templates.expand_task(t, templates.task_context(t, "n9", "h3", "linux", "x86_64"))
    assert list(out.spec.container.env) == ["PLAIN=1", "NODE=h3", "TIER=front", "NAME=web.2.t1"]
    assert out.spec.container.hostname == "web-2-linux"
    assert list(t.spec.container.env)[1] == "NODE={{.Node.Hostname}}"  # the task itself is untouched
