"""Issue 11's container options -> Docker create arguments (pure), and the
executor expanding templates and advertising generic resources (against
the in-memory engine)."""

from __future__ import annotations

from swarmlet.agent.executor import Executor
from swarmlet.agent.runtime import containers as cm
from swarmlet.agent.runtime.fake import FakeRuntime
from swarmlet.api import objects_pb2 as pb
from tests.unit.agent.test_executor import IMAGE, NODE, Reports, task
from tests.waiting import wait_for


def _full() -> pb.Task:
    t = task()
    c = t.spec.container
    c.user, c.dir, c.hostname, c.stop_signal = "1000:100", "/srv", "web-1", "SIGQUIT"
    c.init = c.read_only = c.tty = True
    c.cap_add.append("CAP_NET_ADMIN")
    c.cap_drop.append("CAP_CHOWN")
    c.sysctls["net.ipv4.ip_forward"] = "1"
    c.ulimits.add(name="nofile", soft=1024, hard=2048)
    c.groups.append("audio")
    c.dns_config.nameservers.append("10.0.0.53")
    c.dns_config.search.append("example.com")
    c.dns_config.options.append("ndots:2")
    c.hosts.append("10.0.0.1 db db.local")
    c.env.append("A=1")
    t.spec.log_driver.name = "json-file"
    t.spec.log_driver.options["max-size"] = "1m"
    t.spec.resources.limits.pids = 64
    t.assigned_generic.add(kind="gpu", named_value="GPU-1")
    t.assigned_generic.add(kind="gpu", named_value="GPU-2")
    t.assigned_generic.add(kind="fpga", discrete_value=2)
    return t


def test_every_option_reaches_the_create_arguments() -> None:
    t = _full()
    create = cm.create_container_kwargs(t, NODE)
    assert {k: create[k] for k in ("user", "working_dir", "hostname", "tty", "stop_signal")} == {
        "user": "1000:100",
        "working_dir": "/srv",
        "hostname": "web-1",
        "tty": True,
        "stop_signal": "SIGQUIT",
    }
    # As Swarm: the units the scheduler gave the task, in the environment.
    assert create["environment"] == ["A=1", "DOCKER_RESOURCE_GPU=GPU-1,GPU-2", "DOCKER_RESOURCE_FPGA=2"]
    host = cm.host_config_kwargs(t)
    assert host["init"] is True and host["read_only"] is True
    assert host["cap_add"] == ["CAP_NET_ADMIN"] and host["cap_drop"] == ["CAP_CHOWN"]
    assert host["sysctls"] == {"net.ipv4.ip_forward": "1"}
    assert host["ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert host["group_add"] == ["audio"]
    assert host["dns"] == ["10.0.0.53"] and host["dns_search"] == ["example.com"] and host["dns_opt"] == ["ndots:2"]
    assert host["extra_hosts"] == ["db:10.0.0.1", "db.local:10.0.0.1"]
    assert host["log_config"] == {"Type": "json-file", "Config": {"max-size": "1m"}}
    assert host["pids_limit"] == 64


def test_with_overlay_networks_dns_servers_are_the_embedded_servers_upstreams() -> None:
    t = _full()
    t.networks.add(network_id="net1", addr="10.0.1.5")
    host = cm.host_config_kwargs(t)
    # The container asks 127.0.0.11; names outside the cluster go on to 10.0.0.53.
    assert host["dns"] == ["127.0.0.11"]
    assert host["dns_search"] == ["example.com"]


def test_no_option_no_argument() -> None:
    t = task()
    assert cm.service_options_create(t) == {} and cm.service_options_host(t) == {}


def test_the_executor_expands_templates_on_its_node() -> None:
    engine = FakeRuntime(hostname="engine-host", images={IMAGE: ()})
    reports = Reports()
    ex = Executor(engine, NODE, reports, hostname="node-one")
    ex.start()
    try:
        t = task()
        t.service_labels["tier"] = "front"
        t.spec.container.env.extend(["WHERE={{.Node.Hostname}}/{{.Node.ID}}", 'TIER={{index .Service.Labels "tier"}}'])
        t.spec.container.hostname = "{{.Service.Name}}-{{.Task.Slot}}"
        ex.converge([t])
        st = reports.wait_state("t1", pb.RUNNING)
        created = engine.created_tasks[st.container_id].spec.container
        assert list(created.env) == [f"WHERE=node-one/{NODE}", "TIER=front"]
        assert created.hostname == "web-1"
    finally:
        ex.stop()


def test_the_executor_advertises_its_generic_resources() -> None:
    engine = FakeRuntime(hostname="engine-host", images={IMAGE: ()})
    gpu = pb.GenericResource(kind="gpu", named_value="GPU-1")
    ex = Executor(engine, NODE, Reports(), generic_resources=[gpu])
    desc = ex.describe()
    assert list(desc.resources.generic) == [gpu]
    assert ex.platform() == ("linux", "x86_64")


def test_start_interval_probes_make_a_task_running_before_the_engines_first_check() -> None:
    engine = FakeRuntime(hostname="engine-host", images={IMAGE: ()})
    reports = Reports()
    ex = Executor(engine, NODE, reports)
    ex.start()
    try:
        t = task()
        hc = t.spec.container.healthcheck
        t.spec.container.has_healthcheck = True
        hc.test.extend(["CMD-SHELL", "test -f /ready"])
        hc.start_period, hc.start_interval = 10.0, 0.05
        engine.exec_default = 1  # not ready yet
        ex.converge([t])
        st = reports.wait_state("t1", pb.STARTING)
        # The engine says "starting"; the probe's first failures do not count.
        wait_for(lambda: len(engine.execs) >= 3, 5, "probes every start interval")
        assert reports.states("t1") == [pb.STARTING]
        engine.exec_codes[st.container_id] = 0
        assert reports.wait_state("t1", pb.RUNNING).message == "healthy"
        assert engine.execs[0] == (st.container_id, ["/bin/sh", "-c", "test -f /ready"])
        n = len(engine.execs)
        assert ex.wait_idle(2)
        assert len(engine.execs) <= n + 1  # probing stops once it passed
    finally:
        ex.stop()


def test_no_start_interval_no_probe() -> None:
    engine = FakeRuntime(hostname="engine-host", images={IMAGE: ()})
    reports = Reports()
    ex = Executor(engine, NODE, reports)
    ex.start()
    try:
        t = task()
        t.spec.container.has_healthcheck = True
        t.spec.container.healthcheck.test.extend(["CMD", "true"])
        ex.converge([t])
        reports.wait_state("t1", pb.STARTING)
        assert ex.wait_idle(2)
        assert engine.execs == [] and reports.states("t1") == [pb.STARTING]
    finally:
        ex.stop()
