"""Compose keys of issues 10 and 11 (volumes, tmpfs, secrets, configs, the
service options, jobs, placement preferences, generic resources): each maps
onto the fields the `service create` flags set, and a bad value is refused
naming file, line and key (no daemon needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmlet.api import objects_pb2 as pb
from swarmlet.cli import stack_files
from swarmlet.cli.compose import stack as compose
from swarmlet.cli.compose import storage as compose_storage
from swarmlet.cli.compose.check import ComposeError
from swarmlet.cli.service_flags import ContainerCreateFlags, ContainerFlags, StorageFlags
from swarmlet.cli.service_options import apply_container, apply_create, apply_mode
from swarmlet.cli.storage import apply_storage

NS = "com.docker.stack.namespace"


def load(tmp_path: Path, text: str, name: str = "app") -> compose.Stack:
    p = tmp_path / "stack.yml"
    p.write_text(text)
    return compose.load(name, [str(p)], environ={})


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ComposeError) as ei:
        load(tmp_path, text)
    return str(ei.value)


def web(tmp_path: Path, body: str, top: str = "") -> pb.ServiceSpec:
    """The `web` service of a file whose service keys are `body` (indented 4)."""
    return load(tmp_path, "services:\n  web:\n    image: i\n" + body + top).services["web"]


# ---- service options: the same fields as the flags ----

OPTIONS = """\
    user: "1000:100"
    working_dir: /app
    hostname: "web-{{.Task.Slot}}"
    init: true
    read_only: true
    tty: true
    cap_add: [net_admin, CAP_SYS_TIME]
    cap_drop: [ALL]
    sysctls: {net.core.somaxconn: 1024}
    ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 512}
    dns: 10.0.0.53
    dns_search: [example.com]
    dns_opt: ["ndots:2"]
    extra_hosts: ["db:10.0.0.2", "cache=10.0.0.3"]
    stop_signal: quit
    group_add: [audio, 100]
    logging: {driver: json-file, options: {max-size: 10m}}
    deploy:
      placement:
        preferences: [{spread: node.labels.zone}]
        max_replicas_per_node: 2
      resources:
        limits: {pids: 100}
        reservations:
          generic_resources: [{discrete_resource_spec: {kind: gpu, value: 2}}]
"""


def test_service_options_set_the_fields_of_the_service_create_flags(tmp_path: Path) -> None:
    got = web(tmp_path, OPTIONS)
    want = pb.ServiceSpec()
    flags = ContainerFlags(
        user="1000:100",
        workdir="/app",
        hostname="web-{{.Task.Slot}}",
        init=True,
        read_only=True,
        tty=True,
        stop_signal="quit",
        cap_add=["net_admin", "CAP_SYS_TIME"],
        cap_drop=["ALL"],
        log_driver="json-file",
        log_opt=["max-size=10m"],
        limit_pids=100,
        replicas_max_per_node=2,
    )
    apply_container(want, flags, create=True)
    create = ContainerCreateFlags(
        sysctl=["net.core.somaxconn=1024"],
        ulimit=["nofile=1024:2048", "nproc=512"],
        group=["audio", "100"],
        dns=["10.0.0.53"],
        dns_search=["example.com"],
        dns_option=["ndots:2"],
        host=["db:10.0.0.2", "cache:10.0.0.3"],
        placement_pref=["spread=node.labels.zone"],
        generic_resource=["gpu=2"],
    )
    apply_create(want, create, [], {})
    gc, wc = got.task.container, want.task.container
    for name in ("user", "dir", "hostname", "init", "read_only", "tty", "stop_signal", "cap_add", "cap_drop"):
        assert getattr(gc, name) == getattr(wc, name), name
    assert dict(gc.sysctls) == dict(wc.sysctls)
    assert list(gc.ulimits) == list(wc.ulimits)
    assert list(gc.groups) == list(wc.groups)
    assert gc.dns_config == wc.dns_config
    assert list(gc.hosts) == list(wc.hosts) == ["10.0.0.2 db", "10.0.0.3 cache"]
    assert got.task.log_driver == want.task.log_driver
    assert got.task.placement.preferences == want.task.placement.preferences
    assert got.task.placement.max_replicas == want.task.placement.max_replicas == 2
    assert got.task.resources.limits.pids == 100
    assert list(got.task.resources.reservations.generic) == list(want.task.resources.reservations.generic)
    assert gc.stop_signal == "SIGQUIT" and list(gc.cap_add) == ["CAP_NET_ADMIN", "CAP_SYS_TIME"]


@pytest.mark.parametrize(
    ("mode", "replicas", "field"),
    [("replicated-job", 3, "replicated_job"), ("global-job", None, "global_job")],
)
def test_job_modes_as_service_create_mode(tmp_path: Path, mode: str, replicas: int | None, field: str) -> None:
    body = f"    deploy:\n      mode: {mode}\n" + (f"      replicas: {replicas}\n" if replicas is not None else "")
    got = web(tmp_path, body)
    want = pb.ServiceSpec()
    apply_mode(want, mode, replicas, None)
    assert got.WhichOneof("mode") == field
    assert getattr(got, field) == getattr(want, field)
    assert got.task.restart.condition == pb.RestartPolicy.ON_FAILURE  # a job that completes is done


def test_a_job_keeps_an_explicit_restart_condition(tmp_path: Path) -> None:
    got = web(tmp_path, "    deploy:\n      mode: global-job\n      restart_policy: {condition: none}\n")
    assert got.task.restart.condition == pb.RestartPolicy.NONE


def test_sysctls_and_extra_hosts_take_lists_and_maps(tmp_path: Path) -> None:
    got = web(tmp_path, "    sysctls: [net.ipv4.ip_forward=1]\n    extra_hosts: {db: 10.0.0.2}\n")
    assert dict(got.task.container.sysctls) == {"net.ipv4.ip_forward": "1"}
    assert list(got.task.container.hosts) == ["10.0.0.2 db"]


# ---- volumes and tmpfs ----

VOLUMES = """\
    volumes:
      - data:/data
      - ./conf:/etc/conf:ro
      - /srv/logs:/logs
      - /anon
      - type: volume
        source: data
        target: /nocopy
        volume: {nocopy: true}
      - type: tmpfs
        target: /cache
        tmpfs: {size: 64m, mode: 0700}
    tmpfs: [/run]
"""
VOLUMES_TOP = """\
volumes:
  data:
    driver: local
    driver_opts: {type: tmpfs, device: tmpfs}
    labels: {tier: db}
"""


def test_volumes_map_onto_the_mounts_of_mount_flags(tmp_path: Path) -> None:
    got = list(web(tmp_path, VOLUMES, VOLUMES_TOP).task.container.mounts)
    want = pb.ServiceSpec()
    conf = str(tmp_path / "conf")
    vol = "volume-driver=local,volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-label=tier=db,volume-label=" + NS + "=app"
    apply_storage(
        want,
        StorageFlags(
            mounts=[
                f"type=volume,source=app_data,target=/data,{vol}",
                f"type=bind,source={conf},target=/etc/conf,readonly",
                "type=bind,source=/srv/logs,target=/logs",
                "type=volume,target=/anon",
                f"type=volume,source=app_data,target=/nocopy,volume-nocopy,{vol}",
                "type=tmpfs,target=/cache,tmpfs-size=64m,tmpfs-mode=0700",
                "type=tmpfs,target=/run",
            ]
        ),
    )
    assert got == list(want.task.container.mounts)


def test_external_and_named_volumes(tmp_path: Path) -> None:
    top = "volumes:\n  old: {external: true}\n  other: {name: shared-data}\n"
    got = web(tmp_path, "    volumes: [old:/a, other:/b]\n", top).task.container.mounts
    assert [(m.source, dict(m.volume_labels)) for m in got] == [("old", {}), ("shared-data", {NS: "app"})]


# ---- secrets and configs ----


def test_secrets_and_configs_short_and_long(tmp_path: Path) -> None:
    (tmp_path / "pw.txt").write_text("hunter2\n")
    (tmp_path / "app.conf").write_text("port=80\n")
    body = (
        "    secrets:\n      - pw\n      - {source: pw, target: db_pw, uid: '100', gid: 101, mode: 0400}\n"
        "      - ext\n"
        "    configs:\n      - conf\n      - {source: conf, target: /etc/app.conf, mode: '0440'}\n"
    )
    top = (
        "secrets:\n  pw: {file: ./pw.txt}\n  ext: {external: true, name: corp-pw}\n"
        "configs:\n  conf: {file: app.conf, name: app-conf-v1, labels: {a: b}}\n"
    )
    st = load(tmp_path, "services:\n  web:\n    image: i\n" + body + top)
    c = st.services["web"].task.container
    assert [(r.secret_name, r.file) for r in c.secrets] == [
        ("app_pw", pb.FileTarget(name="pw")),
        ("app_pw", pb.FileTarget(name="db_pw", uid="100", gid="101", mode=0o400)),
        ("corp-pw", pb.FileTarget(name="ext")),
    ]
    assert [(r.config_name, r.file) for r in c.configs] == [
        ("app-conf-v1", pb.FileTarget(name="/conf")),
        ("app-conf-v1", pb.FileTarget(name="/etc/app.conf", mode=0o440)),
    ]
    pw, ext = st.objects.secrets["pw"], st.objects.secrets["ext"]
    assert (pw.name, pw.external, pw.data, pw.path) == ("app_pw", False, b"hunter2\n", str(tmp_path / "pw.txt"))
    assert pw.labels == {NS: "app"}
    assert (ext.name, ext.external, ext.data) == ("corp-pw", True, b"")
    conf = st.objects.configs["conf"]
    assert (conf.name, conf.labels) == ("app-conf-v1", {"a": "b", NS: "app"})
    assert "hunter2" not in repr(st.objects)  # the data never shows in a traceback


def test_the_digest_label_tells_a_changed_file_and_holds_no_data() -> None:
    label = stack_files.digest(b"hunter2\n")
    assert "hunter2" not in label and b"hunter2".hex() not in label
    assert stack_files.same_data(label, b"hunter2\n")
    assert not stack_files.same_data(label, b"hunter3\n")
    assert not stack_files.same_data("", b"hunter2\n")
    assert stack_files.digest(b"x") != stack_files.digest(b"x")  # salted


# ---- errors name file, line and key ----


@pytest.mark.parametrize(
    ("text", "tail"),
    [
        (
            "services:\n  web:\n    image: i\n    cap_add: [NET_ADMIM]\n",
            "stack.yml:4: services.web.cap_add[0]: unknown capability 'NET_ADMIM'",
        ),
        (
            "services:\n  web:\n    image: i\n    stop_signal: SIGNOPE\n",
            "stack.yml:4: services.web.stop_signal: invalid stop signal",
        ),
        (
            "services:\n  web:\n    image: i\n    sysctls:\n      kernel.hostname: x\n",
            "stack.yml:5: services.web.sysctls.kernel.hostname: sysctl kernel.hostname is not namespaced",
        ),
        (
            "services:\n  web:\n    image: i\n    ulimits:\n      nofile: {soft: 10, hard: 5}\n",
            "stack.yml:5: services.web.ulimits.nofile: invalid ulimit nofile: the soft limit 10 is above the hard limit 5",
        ),
        (
            "services:\n  web:\n    image: i\n    ulimits:\n      nofiles: 5\n",
            "stack.yml:5: services.web.ulimits.nofiles: invalid ulimit",
        ),
        (
            "services:\n  web:\n    image: i\n    extra_hosts: ['db:not-an-ip']\n",
            "stack.yml:4: services.web.extra_hosts[0]: invalid host entry",
        ),
        ("services:\n  web:\n    image: i\n    init: maybe\n", "stack.yml:4: services.web.init: expected true or false"),
        (
            "services:\n  web:\n    image: i\n    logging: {options: {a: b}}\n",
            "stack.yml:4: services.web.logging: logging.options need logging.driver",
        ),
        (
            "services:\n  web:\n    image: i\n    deploy:\n      placement:\n        preferences: [{spread: zone}]\n",
            "stack.yml:6: services.web.deploy.placement.preferences[0].spread: invalid placement preference",
        ),
        (
            "services:\n  web:\n    image: i\n    deploy:\n      resources:\n        reservations:\n"
            "          generic_resources: [{discrete_resource_spec: {kind: gpu, value: 0}}]\n",
            "stack.yml:7: services.web.deploy.resources.reservations.generic_resources[0].discrete_resource_spec: "
            "invalid generic resource",
        ),
        (
            "services:\n  web:\n    image: i\n    deploy: {mode: global-job, replicas: 2}\n",
            "stack.yml:4: services.web.deploy.replicas: a global-job service has no replica count",
        ),
        (
            "services:\n  web:\n    image: i\n    deploy:\n      mode: replicated-job\n      update_config: {parallelism: 1}\n",
            "stack.yml:6: services.web.deploy.update_config: update and rollback configuration is not supported for jobs",
        ),
        (
            "services:\n  web:\n    image: i\n    volumes: [data:/data]\n",
            "stack.yml:4: services.web.volumes[0]: volume 'data' is not defined in the top-level volumes",
        ),
        (
            "services:\n  web:\n    image: i\n    volumes: ['/a:/b:z']\n",
            "stack.yml:4: services.web.volumes[0]: invalid volume mode 'z'",
        ),
        (
            "services:\n  web:\n    image: i\n    volumes: ['/a:relative']\n",
            "stack.yml:4: services.web.volumes[0]: mount target 'relative' must be an absolute path",
        ),
        (
            "services:\n  web:\n    image: i\n    volumes:\n      - type: bind\n        source: /a\n        target: /b\n"
            "        bind: {propagation: shared}\n",
            "stack.yml:8: services.web.volumes[0].bind.propagation: not supported by swarmlet",
        ),
        (
            "services:\n  web:\n    image: i\n    volumes:\n      - type: npipe\n        target: /b\n",
            "stack.yml:5: services.web.volumes[0].type: expected one of volume, bind, tmpfs",
        ),
        (
            "services:\n  web:\n    image: i\n    tmpfs: ['/run:size=1m']\n",
            "stack.yml:4: services.web.tmpfs[0]: tmpfs options are not supported here",
        ),
        (
            "services:\n  web:\n    image: i\n    secrets: [{source: s, mode: 999}]\nsecrets:\n  s: {external: true}\n",
            "stack.yml:4: services.web.secrets[0].mode: invalid mode",
        ),
        (
            "services:\n  web:\n    image: i\nsecrets:\n  s: {file: ./missing.txt}\n",
            "stack.yml:5: secrets.s.file: cannot read ./missing.txt",
        ),
        (
            "services:\n  web:\n    image: i\nsecrets:\n  s: {environment: PW}\n",
            "stack.yml:5: secrets.s.environment: not supported by swarmlet",
        ),
        (
            "services:\n  web:\n    image: i\nsecrets:\n  s: {external: true, file: ./x}\n",
            "secrets.s.file: an external secret is only named, not configured",
        ),
        ("services:\n  web:\n    image: i\nconfigs:\n  c: {}\n", "stack.yml:5: configs.c: a config needs file:"),
        (
            "services:\n  web:\n    image: i\nvolumes:\n  v: {external: true, driver: local}\n",
            "volumes.v.driver: an external volume is only named, not configured",
        ),
        (
            "services:\n  web:\n    image: i\n    stdin_open: true\n",
            "stack.yml:4: services.web.stdin_open: not supported by swarmlet: remove it",
        ),
        (
            "services:\n  web:\n    image: i\n    deploy:\n      resources:\n        limits: {devices: []}\n",
            "services.web.deploy.resources.limits.devices: not supported by swarmlet",
        ),
    ],
)
def test_errors(tmp_path: Path, text: str, tail: str) -> None:
    msg = error(tmp_path, text)
    assert tail in msg, msg


def test_empty_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("")
    msg = error(tmp_path, "services:\n  web:\n    image: i\nsecrets:\n  s: {file: ./empty}\n")
    assert "stack.yml:5: secrets.s: the secret 'app_s' is empty" in msg


class _FakeDaemon:
    """The two list RPCs and the create RPCs of secrets and configs."""

    def __init__(self, secrets: list[pb.Secret]) -> None:
        from types import SimpleNamespace

        from swarmlet.api import control_pb2 as cpb

        self.secrets = secrets
        self.created: list[str] = []
        self.stub = SimpleNamespace(
            ListSecrets=lambda req: cpb.ListSecretsResponse(secrets=self.secrets),
            ListConfigs=lambda req: cpb.ListConfigsResponse(),
            CreateSecret=lambda req: self._create(req.spec),
        )

    def _create(self, spec: pb.SecretSpec) -> object:
        from swarmlet.api import control_pb2 as cpb

        self.created.append(spec.name)
        return cpb.SecretResponse(secret=pb.Secret(id="id-" + spec.name, spec=spec))

    def call(self, method, request):  # type: ignore[no-untyped-def]
        return method(request)


def _objects(tmp_path: Path, data: str) -> dict[str, compose_storage.StackFile]:
    (tmp_path / "pw.txt").write_text(data)
    return load(tmp_path, "services:\n  web:\n    image: i\nsecrets:\n  pw: {file: ./pw.txt}\n").objects.secrets


def test_deploy_creates_a_secret_once_and_refuses_a_changed_file(tmp_path: Path) -> None:
    from swarmlet.cli.client import CLIError

    d = _FakeDaemon([])
    objs = _objects(tmp_path, "one\n")
    existing = stack_files.check(d, "app", objs, "secret")  # type: ignore[arg-type]
    stack_files.create(d, objs, "secret", existing)  # type: ignore[arg-type]
    assert d.created == ["app_pw"]
    made = existing["app_pw"]
    assert made.spec.labels[NS] == "app" and stack_files.DIGEST_LABEL in made.spec.labels
    d.secrets = [pb.Secret(id=made.id, spec=pb.SecretSpec(name="app_pw", labels=made.spec.labels))]  # as listed: no data
    again = stack_files.check(d, "app", _objects(tmp_path, "one\n"), "secret")  # type: ignore[arg-type]
    stack_files.create(d, objs, "secret", again)  # type: ignore[arg-type]
    assert d.created == ["app_pw"]  # unchanged: not created again
    with pytest.raises(CLIError, match=r"secret 'app_pw': the file .*pw\.txt changed since it was deployed"):
        stack_files.check(d, "app", _objects(tmp_path, "two\n"), "secret")  # type: ignore[arg-type]
    d.secrets = [pb.Secret(id="x", spec=pb.SecretSpec(name="app_pw"))]
    with pytest.raises(CLIError, match="exists and is not part of stack app"):
        stack_files.check(d, "app", _objects(tmp_path, "one\n"), "secret")  # type: ignore[arg-type]


def test_later_file_replaces_a_mount_or_secret_at_the_same_target(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a\n")
    (tmp_path / "b.txt").write_text("b\n")
    base = tmp_path / "base.yml"
    base.write_text(
        "services:\n  web:\n    image: i\n    volumes: [data:/data, /srv:/srv]\n    secrets: [{source: a, target: pw}]\n"
        "volumes:\n  data: {}\n  other: {}\n"
        "secrets:\n  a: {file: a.txt}\n  b: {file: b.txt}\n"
    )
    over = tmp_path / "over.yml"
    over.write_text("services:\n  web:\n    volumes: [other:/data]\n    secrets: [{source: b, target: pw}]\n")
    c = compose.load("app", [str(base), str(over)], environ={}).services["web"].task.container
    assert [(m.source, m.target) for m in c.mounts] == [("/srv", "/srv"), ("app_other", "/data")]
    assert [(r.secret_name, r.file.name) for r in c.secrets] == [("app_b", "pw")]


def test_what_the_manager_would_refuse_stops_the_deploy_at_the_service(tmp_path: Path) -> None:
    msg = error(tmp_path, "services:\n  web:\n    image: i\n    hostname: '{{.Bogus}}'\n")
    assert "stack.yml:2: services.web: --hostname: unknown template field {{.Bogus}}" in msg
    msg = error(tmp_path, "services:\n  web:\n    image: i\n    cap_add: [ALL]\n    cap_drop: [ALL]\n")
    assert "stack.yml:2: services.web: capabilities both added and dropped: ALL" in msg
