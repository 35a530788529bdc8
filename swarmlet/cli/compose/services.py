"""One Compose service -> a swarmlet ServiceSpec (pure: no daemon)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.compose import options as opt
from swarmlet.cli.compose import storage
from swarmlet.cli.compose.check import Node
from swarmlet.cli.compose.interpolate import InterpolationError, read_env_file
from swarmlet.cli.parse import parse_cpus, parse_duration, parse_size
from swarmlet.cli.service_options import apply_mode
from swarmlet.core import constraints as cons
from swarmlet.core import validation
from swarmlet.core.updater import DEFAULT_CONFIG

NAMESPACE_LABEL = storage.NAMESPACE_LABEL
IMAGE_LABEL = "com.docker.stack.image"

# Keys `docker stack deploy` ignores (it prints one warning for them): the
# deploy goes on without them.
IGNORED = (
    "build",
    "cgroup_parent",
    "cgroupns_mode",
    "container_name",
    "depends_on",
    "devices",
    "domainname",
    "external_links",
    "ipc",
    "links",
    "mac_address",
    "network_mode",
    "pid",
    "privileged",
    "restart",
    "security_opt",
    "shm_size",
    "userns_mode",
)

_RESTART = {"none": pb.RestartPolicy.NONE, "on-failure": pb.RestartPolicy.ON_FAILURE, "any": pb.RestartPolicy.ANY}
_FAILURE = {"pause": pb.UpdateConfig.PAUSE, "continue": pb.UpdateConfig.CONTINUE, "rollback": pb.UpdateConfig.ROLLBACK}
_ORDER = {"stop-first": pb.UpdateConfig.STOP_FIRST, "start-first": pb.UpdateConfig.START_FIRST}
_PROTO = {"tcp": pb.PortConfig.TCP, "udp": pb.PortConfig.UDP, "sctp": pb.PortConfig.SCTP}
_MODE = {"ingress": pb.PortConfig.INGRESS, "host": pb.PortConfig.HOST}


class ServiceReader:
    """Reads `services.<key>` of the merged tree into a ServiceSpec.

    `handlers` maps each supported key to the method that reads it; a key that
    is neither handled, ignored (IGNORED) nor an `x-` extension is an error
    naming it, so nothing is ever silently dropped."""

    def __init__(
        self,
        stack: str,
        key: str,
        node: Node,
        base_dir: str,
        environ: Mapping[str, str],
        network_name: Callable[[str], str | None],
        warn: Callable[[str], None],
        objects: storage.StackObjects | None = None,
    ) -> None:
        self.stack, self.key, self.node = stack, key, node.mapping()
        self.objects = objects or storage.StackObjects()
        self.base_dir, self.environ = base_dir, environ
        self.network_name, self.warn = network_name, warn
        self.spec = pb.ServiceSpec(name=f"{stack}_{key}")
        self.c = self.spec.task.container
        self.env: dict[str, str] = {}

    def read(self) -> pb.ServiceSpec:
        handlers: dict[str, Callable[[Node], None]] = {
            "image": self._image,
            "command": lambda n: self.c.args.extend(n.command()),
            "entrypoint": lambda n: self.c.command.extend(n.command()),
            "environment": self._environment,
            "env_file": self._env_file,
            "labels": self._container_labels,
            "ports": self._ports,
            "networks": self._networks,
            "healthcheck": self._healthcheck,
            "stop_grace_period": lambda n: setattr(self.c, "stop_grace_period", n.parsed(parse_duration, "duration")),
            "deploy": self._deploy,
            **self._option_handlers(),
        }
        ignored = []
        for k, n in self.node.items():
            if k.startswith("x-"):
                continue
            if k in IGNORED:
                ignored.append(k)
                continue
            h = handlers.get(k)
            if h is None:
                n.fail("not supported by swarmlet: remove it, or deploy without it" if k in UNSUPPORTED else "unknown key")
            h(n)
        if ignored:
            self.warn(f"Ignoring unsupported options: {', '.join(sorted(ignored))}")
        if not self.c.image:
            self.node.fail("an image is required")
        # env_file first, environment over it (Compose's precedence).
        self.c.env.extend(f"{k}={v}" for k, v in self.env.items())
        if self.spec.WhichOneof("mode") is None:
            self.spec.replicated.replicas = 1
        self.spec.labels[NAMESPACE_LABEL] = self.stack
        self.spec.labels[IMAGE_LABEL] = self.c.image
        self.c.labels[NAMESPACE_LABEL] = self.stack
        return self.spec

    def _option_handlers(self) -> dict[str, Callable[[Node], None]]:
        """Keys of issues 10 and 11: the fields `service create` sets."""
        c, o = self.c, self.objects
        return {
            "volumes": lambda n: storage.service_volumes(c, n, self.base_dir, o.volumes),
            "tmpfs": lambda n: storage.service_tmpfs(c, n),
            "secrets": lambda n: storage.service_secrets(c, n, o.secrets),
            "configs": lambda n: storage.service_configs(c, n, o.configs),
            "user": lambda n: setattr(c, "user", n.string().strip()),
            "working_dir": lambda n: setattr(c, "dir", n.string().strip()),
            "hostname": lambda n: setattr(c, "hostname", n.string().strip()),
            "init": lambda n: setattr(c, "init", n.boolean()),
            "read_only": lambda n: setattr(c, "read_only", n.boolean()),
            "tty": lambda n: setattr(c, "tty", n.boolean()),
            "cap_add": lambda n: opt.caps(c.cap_add, n),
            "cap_drop": lambda n: opt.caps(c.cap_drop, n),
            "sysctls": lambda n: opt.sysctls(c, n),
            "ulimits": lambda n: opt.ulimits(c, n),
            "dns": lambda n: opt.strings(c.dns_config.nameservers, n),
            "dns_search": lambda n: opt.strings(c.dns_config.search, n),
            "dns_opt": lambda n: opt.strings(c.dns_config.options, n),
            "extra_hosts": lambda n: opt.extra_hosts(c, n),
            "stop_signal": lambda n: opt.stop_signal(c, n),
            "logging": lambda n: opt.logging(self.spec.task, n),
            "group_add": lambda n: opt.group_add(c, n),
        }

    # ---- container ----
    def _image(self, n: Node) -> None:
        image = n.string()
        if not image or len(image) > 512 or any(ch.isspace() for ch in image):
            n.fail(f"invalid image reference {image!r}")
        self.c.image = image

    def _environment(self, n: Node) -> None:
        for k, v in n.dict_or_list().items():
            if v is None:
                # `- NAME` alone: the deploying shell's value, dropped when unset (as docker).
                if k in self.environ:
                    self.env[k] = self.environ[k]
                continue
            self.env[k] = v

    def _env_file(self, n: Node) -> None:
        for e in n.elements() if isinstance(n.value, list) else [n]:
            path = e.string()
            full = path if os.path.isabs(path) else os.path.join(self.base_dir, path)
            try:
                values = read_env_file(full)
            except OSError as err:
                e.fail(f"cannot read env file {path}: {err.strerror}")
            except InterpolationError as err:
                e.fail(str(err))
            for k, v in values.items():
                self.env.setdefault(k, v)

    def _container_labels(self, n: Node) -> None:
        for k, v in n.dict_or_list().items():
            self.c.labels[k] = v or ""

    def _healthcheck(self, n: Node) -> None:
        n.mapping()
        h = self.c.healthcheck
        self.c.has_healthcheck = True
        if n.has("disable") and n.child("disable").boolean():
            h.test.append("NONE")
            return
        for k, sub in n.items():
            if k == "test":
                if isinstance(sub.value, str):
                    h.test.extend(["CMD-SHELL", sub.value])
                else:
                    test = sub.strings()
                    if not test or test[0] not in ("CMD", "CMD-SHELL", "NONE"):
                        sub.fail("a list test starts with CMD, CMD-SHELL or NONE")
                    h.test.extend(test)
            elif k in ("interval", "timeout", "start_period"):
                setattr(h, k, sub.parsed(parse_duration, "duration"))
            elif k == "retries":
                h.retries = sub.integer(minimum=0)
            elif k != "disable":
                sub.fail("unknown key")

    # ---- endpoint ----
    def _ports(self, n: Node) -> None:
        seen: dict[tuple[int, int, int], int] = {}
        for e in n.elements():
            p = _port(e)
            key = (p.published_port, p.target_port, p.protocol)
            if key in seen and p.published_port:
                del self.spec.endpoint.ports[seen[key]]  # a later file's entry wins
            seen[key] = len(self.spec.endpoint.ports)
            self.spec.endpoint.ports.append(p)

    def _networks(self, n: Node) -> None:
        """`networks: [a, b]` or `networks: {a: {aliases: [...]}}`: each entry
        one attachment, its Compose aliases its extra DNS names there (the
        short name is added to every attachment by stack.load, as docker)."""
        entries: list[tuple[str, Node | None]]
        if isinstance(n.value, dict):
            entries = [(k, sub) for k, sub in n.items() if not k.startswith("x-")]
        else:
            entries = [(e.string(), None) for e in n.elements()]
        for key, sub in entries:
            name = self.network_name(key)
            if name is None:
                (sub or n).fail(f"network {key!r} is not defined in the top-level networks")
            att = self.spec.networks.add(target=name)
            if sub is None or sub.value is None:
                continue
            for k, opt_ in sub.mapping().items():
                if k == "aliases":
                    att.aliases.extend(_aliases(opt_, name))
                elif k in _ADDRESS_KEYS:
                    opt_.fail("not supported by swarmlet: a task's address comes from the network's pool")
                elif k in _ATTACHMENT_UNSUPPORTED:
                    opt_.fail("not supported by swarmlet (an attachment takes aliases only)")
                elif not k.startswith("x-"):
                    opt_.fail("unknown key")

    # ---- deploy ----
    def _deploy(self, n: Node) -> None:
        n.mapping()
        mode = "replicated"
        replicas: int | None = None
        for k, sub in n.items():
            if k == "mode":
                mode = sub.choice(("replicated", "global", "replicated-job", "global-job"))
            elif k == "replicas":
                replicas = sub.integer(minimum=0, maximum=10000)
                self.spec.replicated.replicas = replicas
            elif k == "placement":
                self._placement(sub)
            elif k == "resources":
                self._resources(sub)
            elif k == "restart_policy":
                self._restart(sub)
            elif k in ("update_config", "rollback_config"):
                _update_config(sub, self.spec.update if k == "update_config" else self.spec.rollback)
            elif k == "labels":
                for lk, lv in sub.dict_or_list().items():
                    self.spec.labels[lk] = lv or ""
            elif k == "endpoint_mode":
                m = sub.choice(("vip", "dnsrr"))
                self.spec.endpoint.mode = pb.EndpointSpec.VIP if m == "vip" else pb.EndpointSpec.DNSRR
            elif not k.startswith("x-"):
                sub.fail("unknown key")
        if mode in ("global", "global-job") and n.has("replicas"):
            n.child("replicas").fail(f"a {mode} service has no replica count (one task per node)")
        if mode == "global":
            self.spec.ClearField("replicated")
            getattr(self.spec, "global").SetInParent()  # `global` is a Python keyword
        elif mode in ("replicated-job", "global-job"):
            # As `service create --mode replicated-job|global-job` (cli/service_options.py).
            for k in ("update_config", "rollback_config"):
                if n.has(k):
                    n.child(k).fail("update and rollback configuration is not supported for jobs")
            self.spec.ClearField("replicated")
            apply_mode(self.spec, mode, replicas, None)
            if not (n.has("restart_policy") and n.child("restart_policy").has("condition")):
                self.spec.task.restart.condition = pb.RestartPolicy.ON_FAILURE

    def _placement(self, n: Node) -> None:
        for k, sub in n.mapping().items():
            if k == "constraints":
                for e in sub.elements():
                    expr = e.string()
                    try:
                        cons.parse_constraint(expr)
                    except ValueError as err:
                        e.fail(str(err))
                    self.spec.task.placement.constraints.append(expr)
            elif k == "preferences":
                opt.preferences(self.spec.task.placement, sub)
            elif k == "max_replicas_per_node":
                self.spec.task.placement.max_replicas = sub.integer(minimum=0)
            else:
                sub.fail("unknown key")

    def _resources(self, n: Node) -> None:
        for k, sub in n.mapping().items():
            if k not in ("limits", "reservations"):
                sub.fail("unknown key")
            target = getattr(self.spec.task.resources, k)
            for rk, rv in sub.mapping().items():
                if rk == "cpus":
                    target.nano_cpus = rv.parsed(parse_cpus, "CPU count")
                elif rk == "memory":
                    target.memory_bytes = rv.parsed(parse_size, "size")
                elif rk == "pids" and k == "limits":
                    target.pids = rv.integer(minimum=0)
                elif rk == "generic_resources" and k == "reservations":
                    opt.generic_resources(target, rv)
                elif rk == "devices":
                    rv.fail("not supported by swarmlet (devices)")
                else:
                    rv.fail("unknown key")

    def _restart(self, n: Node) -> None:
        rp = self.spec.task.restart
        for k, sub in n.mapping().items():
            if k == "condition":
                rp.condition = _RESTART[sub.choice(tuple(_RESTART))]
            elif k == "delay":
                rp.delay = sub.parsed(parse_duration, "duration")
            elif k == "max_attempts":
                rp.max_attempts = sub.integer(minimum=0)
            elif k == "window":
                rp.window = sub.parsed(parse_duration, "duration")
            else:
                sub.fail("unknown key")


# Keys of the Compose format swarmlet has no counterpart for: refused by
# name (Swarm would keep stdin open or set Windows options; swarmlet's
# containers have neither, and `expose` documents ports no task publishes).
UNSUPPORTED = frozenset({"stdin_open", "isolation", "credential_spec", "expose"})


# A service's attachment keys of the Compose format that swarmlet cannot
# honour: the allocator picks every address, and a task's interfaces are
# ordered, named and prioritised by the agent alone. Refused by name rather
# than ignored (docker ignores the addresses), so nothing is silently dropped.
_ADDRESS_KEYS = frozenset({"ipv4_address", "ipv6_address", "link_local_ips", "mac_address"})
_ATTACHMENT_UNSUPPORTED = frozenset({"driver_opts", "priority", "gw_priority", "interface_name"})


def _aliases(n: Node, network: str) -> list[str]:
    """A list of DNS names, each checked at its own line by the manager's
    rule for aliases (core/validation.py), so the manager never refuses one
    the file passed."""
    out: list[str] = []
    for e in n.elements():
        alias = e.string()
        try:
            validation.check_network_aliases(pb.NetworkAttachmentConfig(aliases=[alias]), network)
        except errors.Invalid as err:
            e.fail(str(err))
        out.append(alias)
    return out


def _update_config(n: Node, cfg: pb.UpdateConfig) -> None:
    cfg.CopyFrom(DEFAULT_CONFIG)
    for k, sub in n.mapping().items():
        if k == "parallelism":
            cfg.parallelism = sub.integer(minimum=0)
        elif k == "delay":
            cfg.delay = sub.parsed(parse_duration, "duration")
        elif k == "failure_action":
            cfg.failure_action = _FAILURE[sub.choice(tuple(_FAILURE))]
        elif k == "monitor":
            cfg.monitor = sub.parsed(parse_duration, "duration")
        elif k == "max_failure_ratio":
            cfg.max_failure_ratio = sub.number(minimum=0)
        elif k == "order":
            cfg.order = _ORDER[sub.choice(tuple(_ORDER))]
        else:
            sub.fail("unknown key")


def _port(e: Node) -> pb.PortConfig:
    p = pb.PortConfig()
    if isinstance(e.value, dict):
        for k, sub in e.items():
            if k == "target":
                p.target_port = sub.integer(minimum=1, maximum=65535)
            elif k == "published":
                p.published_port = sub.integer(minimum=1, maximum=65535)
            elif k == "protocol":
                p.protocol = _PROTO[sub.choice(tuple(_PROTO))]
            elif k == "mode":
                p.publish_mode = _MODE[sub.choice(tuple(_MODE))]
            else:
                sub.fail("unknown key" if k != "host_ip" else "not supported by swarmlet (ports are published on every address)")
        if not p.target_port:
            e.fail("a port needs a target")
        return p
    text = e.string() if not isinstance(e.value, int) else str(e.value)
    ports, _, proto = text.partition("/")
    if proto:
        if proto not in _PROTO:
            e.fail(f"invalid protocol {proto!r}: use tcp, udp or sctp")
        p.protocol = _PROTO[proto]
    parts = ports.split(":")
    if len(parts) > 2:
        e.fail(f"binding to a host address is not supported by swarmlet: {text!r}")
    try:
        if len(parts) == 2:
            p.published_port = _number(parts[0])
        p.target_port = _number(parts[-1])
    except ValueError as err:
        e.fail(f"invalid port {text!r}: {err}")
    return p


def _number(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a port number" + (" (port ranges are not supported yet)" if "-" in text else ""))
    n = int(text)
    if not 1 <= n <= 65535:
        raise ValueError(f"{n} out of range (1-65535)")
    return n
