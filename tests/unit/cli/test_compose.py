"""Compose files for stacks: reading, interpolation, merging, checking and
conversion, with errors naming file, line and key (no daemon needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.compose import interpolate as interp
from swarmlet.cli.compose import stack as compose
from swarmlet.cli.compose.check import ComposeError


def write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None, name: str = "app") -> compose.Stack:
    return compose.load(name, [write(tmp_path, "stack.yml", text)], environ=env or {})


def error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ComposeError) as ei:
        load(tmp_path, text, env)
    return str(ei.value)


# ---- interpolation ----


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("plain", "plain"),
        ("$A", "a"),
        ("${A}", "a"),
        ("x${A}y", "xay"),
        ("${UNSET}", ""),
        ("${UNSET:-def}", "def"),
        ("${EMPTY:-def}", "def"),
        ("${EMPTY-def}", ""),
        ("${UNSET-def}", "def"),
        ("${A:+alt}", "alt"),
        ("${UNSET:+alt}", ""),
        ("${UNSET:-${A}}", "a"),
        ("$$A", "$A"),
        ("cost 5$$", "cost 5$"),
    ],
)
def test_interpolate_text(text: str, want: str) -> None:
    assert interp.interpolate_text(text, {"A": "a", "EMPTY": ""}) == want


def test_required_variable_error_names_file_line_and_key(tmp_path: Path) -> None:
    msg = error(tmp_path, "services:\n  web:\n    image: ${IMAGE?set IMAGE to the image}\n")
    assert msg.endswith("stack.yml:3: services.web.image: required variable IMAGE is not set: set IMAGE to the image")


def test_dotenv_beside_the_file_and_the_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("# comment\nTAG=from-dotenv\nexport OTHER='quoted value'\n")
    st = load(tmp_path, 'services:\n  web:\n    image: img:${TAG}\n    environment: ["O=${OTHER}"]\n')
    c = st.services["web"].task.container
    assert (c.image, list(c.env)) == ("img:from-dotenv", ["O=quoted value"])
    st = load(tmp_path, "services:\n  web:\n    image: img:${TAG}\n", env={"TAG": "from-env"})
    assert st.services["web"].task.container.image == "img:from-env"


def test_keys_are_not_interpolated(tmp_path: Path) -> None:
    st = load(tmp_path, "services:\n  web:\n    image: i\n    environment:\n      $KEY: v\n", env={"KEY": "x"})
    assert list(st.services["web"].task.container.env) == ["$KEY=v"]


# ---- conversion ----

FULL = """\
version: "3.8"
x-base: &base
  image: busybox:1
  labels: {tier: app}
services:
  web:
    <<: *base
    command: httpd -f -p 80
    entrypoint: ["/bin/sh", "-c"]
    environment:
      - A=1
      - FROM_SHELL
    ports:
      - "8080:80"
      - target: 53
        published: 5353
        protocol: udp
        mode: host
    networks: [front]
    healthcheck: {test: "wget -q localhost", interval: 5s, retries: 2}
    stop_grace_period: 1m30s
    deploy:
      replicas: 3
      endpoint_mode: dnsrr
      labels: [team=web]
      placement: {constraints: ["node.labels.zone==a"]}
      resources:
        limits: {cpus: "0.5", memory: 64M}
        reservations: {memory: 32M}
      restart_policy: {condition: on-failure, delay: 2s, max_attempts: 3, window: 1m}
      update_config: {parallelism: 2, order: start-first, failure_action: rollback, monitor: 10s}
      rollback_config: {parallelism: 0}
    depends_on: [db]
    restart: always
  db:
    image: busybox:1
    deploy: {mode: global}
networks:
  front:
    attachable: true
    ipam: {config: [{subnet: 10.77.0.0/24}]}
  shared:
    external: true
    name: corp-net
"""


def test_full_service_conversion(tmp_path: Path) -> None:
    st = load(tmp_path, FULL, env={"FROM_SHELL": "yes"})
    web = st.services["web"]
    c = web.task.container
    assert web.name == "app_web"
    assert list(c.command) == ["/bin/sh", "-c"] and list(c.args) == ["httpd", "-f", "-p", "80"]
    assert list(c.env) == ["A=1", "FROM_SHELL=yes"]
    assert dict(c.labels) == {"tier": "app", "com.docker.stack.namespace": "app"}
    assert dict(web.labels) == {"team": "web", "com.docker.stack.namespace": "app", "com.docker.stack.image": "busybox:1"}
    assert [(p.published_port, p.target_port, p.protocol, p.publish_mode) for p in web.endpoint.ports] == [
        (8080, 80, pb.PortConfig.TCP, pb.PortConfig.INGRESS),
        (5353, 53, pb.PortConfig.UDP, pb.PortConfig.HOST),
    ]
    assert web.endpoint.mode == pb.EndpointSpec.DNSRR
    assert [a.target for a in web.networks] == ["app_front"]
    assert list(c.healthcheck.test) == ["CMD-SHELL", "wget -q localhost"] and c.healthcheck.interval == 5
    assert c.stop_grace_period == 90
    assert web.replicated.replicas == 3
    assert list(web.task.placement.constraints) == ["node.labels.zone==a"]
    r = web.task.resources
    assert (r.limits.nano_cpus, r.limits.memory_bytes, r.reservations.memory_bytes) == (500_000_000, 64 << 20, 32 << 20)
    rp = web.task.restart
    assert (rp.condition, rp.delay, rp.max_attempts, rp.window) == (pb.RestartPolicy.ON_FAILURE, 2, 3, 60)
    u = web.update
    assert (u.parallelism, u.order, u.failure_action, u.monitor) == (2, pb.UpdateConfig.START_FIRST, pb.UpdateConfig.ROLLBACK, 10)
    assert web.rollback.parallelism == 0 and web.rollback.monitor == 5  # unset fields keep Swarm's defaults
    db = st.services["db"]
    assert db.WhichOneof("mode") == "global"
    assert [a.target for a in db.networks] == ["app_default"]  # no networks: the stack's default one
    assert {k: (n.name, n.external) for k, n in st.networks.items()} == {
        "front": ("app_front", False),
        "shared": ("corp-net", True),
        "default": ("app_default", False),
    }
    front = st.networks["front"].spec
    assert (front.subnet, front.attachable, dict(front.labels)) == ("10.77.0.0/24", True, {"com.docker.stack.namespace": "app"})
    assert st.warnings == ["services.web: Ignoring unsupported options: depends_on, restart"]


def test_target_only_port_has_no_published_port(tmp_path: Path) -> None:
    st = load(tmp_path, "services:\n  redis:\n    image: redis\n    ports: ['6379']\n")
    (p,) = st.services["redis"].endpoint.ports
    assert (p.target_port, p.published_port) == (6379, 0)


# ---- network aliases (service networks in map form) and the short name ----

ALIASES = """\
services:
  db:
    image: i
    networks:
      back:
        aliases: [primary, store, DB]
      front:
  web:
    image: i
    networks: [front]
  solo:
    image: i
networks:
  front: {}
  back: {driver_opts: {}}
"""


def test_compose_aliases_and_the_short_name_on_every_attachment(tmp_path: Path) -> None:
    st = load(tmp_path, ALIASES)

    def attachments(key: str) -> list[tuple[str, list[str]]]:
        return [(a.target, list(a.aliases)) for a in st.services[key].networks]

    # The file's aliases first, then the short name, kept once (DNS names
    # compare case-insensitively: `DB` already names it).
    assert attachments("db") == [("app_back", ["primary", "store", "DB"]), ("app_front", ["db"])]
    assert attachments("web") == [("app_front", ["web"])]
    assert attachments("solo") == [("app_default", ["solo"])]  # the default network too


def test_aliases_of_several_files_append_and_stay_unique(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yml", "services:\n  db:\n    image: i\n    networks: {n: {aliases: [a]}}\nnetworks: {n: {}}\n")
    over = write(tmp_path, "over.yml", "services:\n  db:\n    networks: {n: {aliases: [a, b]}}\n")
    st = compose.load("app", [base, over], environ={})
    assert [list(a.aliases) for a in st.services["db"].networks] == [["a", "b", "db"]]


# ---- errors name file, line and key ----


@pytest.mark.parametrize(
    ("text", "tail"),
    [
        (
            "services:\n  web:\n    image: i\n    deploy:\n      replicas: lots\n",
            "stack.yml:5: services.web.deploy.replicas: expected an integer",
        ),
        ("services:\n  web:\n    image: i\n    bogus: 1\n", "stack.yml:4: services.web.bogus: unknown key"),
        (
            "services:\n  web:\n    image: i\n    secrets: [s]\n",
            "stack.yml:4: services.web.secrets[0]: secret 's' is not defined in the top-level secrets",
        ),
        (
            "services:\n  web:\n    image: i\n    networks: [nope]\n",
            "stack.yml:4: services.web.networks: network 'nope' is not defined in the top-level networks",
        ),
        (
            "services:\n  web:\n    image: i\n    deploy: {mode: everywhere}\n",
            "stack.yml:4: services.web.deploy.mode: expected one of replicated, global, replicated-job, global-job, got 'everywhere'",
        ),
        (
            "services:\n  web:\n    image: i\n    stop_grace_period: soon\n",
            "stack.yml:4: services.web.stop_grace_period: invalid duration",
        ),
        ("services:\n  web:\n    environment: [A=1]\n", "stack.yml:2: services.web: an image is required"),
        (
            "version: '2.4'\nservices:\n  web:\n    image: i\n",
            "stack.yml:1: version: swarmlet deploys Compose files of version 3.x or without a version, not '2.4'",
        ),
        (
            "services:\n  web:\n    image: i\n    deploy:\n      placement: {constraints: [zone=a]}\n",
            "stack.yml:5: services.web.deploy.placement.constraints[0]: invalid constraint",
        ),
        (
            "services:\n  web:\n    image: i\n    networks:\n      n:\n        aliases:\n          - ok\n          - not valid\n"
            "networks: {n: {}}\n",
            "stack.yml:8: services.web.networks.n.aliases[1]: network 'app_n': alias 'not valid' is not a valid name",
        ),
        (
            "services:\n  web:\n    image: i\n    networks: {n: {aliases: primary}}\nnetworks: {n: {}}\n",
            "stack.yml:4: services.web.networks.n.aliases: expected a list, got a string",
        ),
        (
            "services:\n  web:\n    image: i\n    networks:\n      n:\n        ipv4_address: 10.0.0.9\nnetworks: {n: {}}\n",
            "stack.yml:6: services.web.networks.n.ipv4_address: not supported by swarmlet: a task's address comes from",
        ),
        (
            "services:\n  web:\n    image: i\n    networks:\n      n:\n        priority: 5\nnetworks: {n: {}}\n",
            "stack.yml:6: services.web.networks.n.priority: not supported by swarmlet (an attachment takes aliases only)",
        ),
        (
            "services:\n  web:\n    image: i\n    networks:\n      n:\n        nickname: x\nnetworks: {n: {}}\n",
            "stack.yml:6: services.web.networks.n.nickname: unknown key",
        ),
        (
            "services:\n  web:\n    image: i\n    networks:\n      n:\n        aliases: [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9,"
            " b0, b1, b2, b3, b4, b5]\nnetworks: {n: {}}\n",
            "stack.yml:4: services.web.networks: network 'app_n': at most 16 aliases (the service's short name 'web' is one",
        ),
        (
            "services:\n  web:\n    image: i\nnetworks:\n  n:\n    driver_opts:\n      encrypted: ''\n",
            "stack.yml:7: networks.n.driver_opts.encrypted: not supported by swarmlet (its overlay driver supports no driver "
            "options): overlays are not encrypted (see docs/security.md)",
        ),
        (
            "services:\n  web:\n    image: i\nnetworks:\n  n:\n    driver_opts:\n"
            "      com.docker.network.driver.overlay.vxlanid_list: '4097'\n",
            "stack.yml:7: networks.n.driver_opts.com.docker.network.driver.overlay.vxlanid_list: not supported by swarmlet "
            "(its overlay driver supports no driver options): the manager allocates each network's VXLAN id",
        ),
        (
            "services:\n  web:\n    image: i\nnetworks:\n  n:\n    driver_opts:\n      com.docker.network.driver.mtu: '1400'\n",
            "stack.yml:7: networks.n.driver_opts.com.docker.network.driver.mtu: not supported by swarmlet (its overlay "
            "driver supports no driver options): the overlay's MTU is fixed at 1450",
        ),
        (
            "services:\n  web:\n    image: i\nnetworks:\n  n:\n    driver_opts: {color: blue}\n",
            "stack.yml:6: networks.n.driver_opts.color: not supported by swarmlet (its overlay driver supports no driver options)",
        ),
        (
            "services:\n  web:\n    image: i\nnetworks:\n  n:\n    driver_opts: [a]\n",
            "stack.yml:6: networks.n.driver_opts: expected a mapping, got a list",
        ),
        ("services: {}\n", "no services defined"),
        ("services:\n  web:\n    image: i\n  web:\n    image: j\n", "stack.yml:4: key 'web' is given twice"),
        ("services:\n  web: [\n", "stack.yml:3: invalid YAML"),
    ],
)
def test_errors(tmp_path: Path, text: str, tail: str) -> None:
    msg = error(tmp_path, text)
    assert tail in msg, msg


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ComposeError, match="nope.yml: cannot read"):
        compose.load("app", [str(tmp_path / "nope.yml")], environ={})


def test_bad_stack_name() -> None:
    with pytest.raises(ComposeError, match="invalid stack name"):
        compose.check_stack_name("bad name")


# ---- several files ----


def test_files_merge_as_compose_merges_them(tmp_path: Path) -> None:
    base = write(
        tmp_path,
        "base.yml",
        "services:\n  web:\n    image: i:1\n    command: [a, b]\n    environment: [A=1, B=2]\n    ports: ['80:80']\n    deploy: {replicas: 2}\n",
    )
    over = write(
        tmp_path,
        "over.yml",
        "services:\n  web:\n    image: i:2\n    command: [c]\n    environment: {B: 3, C: 4}\n    ports: ['81:81']\n"
        "  extra:\n    image: e\n",
    )
    st = compose.load("app", [base, over], environ={})
    web = st.services["web"]
    assert web.task.container.image == "i:2"
    assert list(web.task.container.args) == ["c"]  # commands are replaced, not appended
    assert list(web.task.container.env) == ["A=1", "B=3", "C=4"]  # list and map forms merge as maps
    assert [p.published_port for p in web.endpoint.ports] == [80, 81]  # sequences append
    assert web.replicated.replicas == 2
    assert set(st.services) == {"web", "extra"}


def test_error_in_a_later_file_names_that_file(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yml", "services:\n  web:\n    image: i\n")
    over = write(tmp_path, "over.yml", "services:\n  web:\n    deploy:\n      replicas: x\n")
    with pytest.raises(ComposeError, match=r"over\.yml:4: services\.web\.deploy\.replicas: expected an integer"):
        compose.load("app", [base, over], environ={})


def test_config_prints_the_merged_interpolated_model(tmp_path: Path) -> None:
    f = write(tmp_path, "s.yml", "x-a: &a {image: 'i:${T:-1}'}\nservices:\n  web: *a\n")
    tree, _ = compose.read_files([f], environ={})
    from swarmlet.cli.compose.yamlpos import plain

    assert plain(tree) == {"x-a": {"image": "i:1"}, "services": {"web": {"image": "i:1"}}}
