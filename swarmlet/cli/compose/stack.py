"""A stack from Compose files: read, interpolate, merge, check, convert.

Everything here is pure over the files and the environment it is given: the
whole application is validated before anything is sent to a manager, so a
bad file changes nothing.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.compose import interpolate as interp
from swarmlet.cli.compose import storage, yamlpos
from swarmlet.cli.compose.check import ComposeError, Node, root
from swarmlet.cli.compose.merge import merge
from swarmlet.cli.compose.services import NAMESPACE_LABEL, ServiceReader
from swarmlet.core import service_options as opts
from swarmlet.core import validation

_STACK_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,40}$")
_TOP_LEVEL = ("version", "name", "services", "networks", "volumes", "secrets", "configs")
DEFAULT_NETWORK = "default"


@dataclass
class StackNetwork:
    key: str  # the name in the file
    name: str  # the name in the cluster
    external: bool
    spec: pb.NetworkSpec


@dataclass
class Stack:
    name: str
    services: dict[str, pb.ServiceSpec] = field(default_factory=dict)  # file key -> spec
    networks: dict[str, StackNetwork] = field(default_factory=dict)  # file key -> network
    objects: storage.StackObjects = field(default_factory=storage.StackObjects)  # volumes, secrets, configs
    warnings: list[str] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)  # the merged, interpolated file (stack config)


def check_stack_name(name: str) -> None:
    if not _STACK_NAME.match(name):
        raise ComposeError(f"invalid stack name {name!r}: use letters, digits, '_', '.' or '-' (at most 41)")


def read_files(paths: Sequence[str], environ: Mapping[str, str] | None = None) -> tuple[yamlpos.PosDict, dict[str, str]]:
    """The merged, interpolated tree of the files, and the environment used."""
    if not paths:
        raise ComposeError("no Compose file given (-c FILE)")
    env = interp.environment_for(paths[0], environ)
    docs = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ComposeError(f"{path}: cannot read: {e.strerror}") from None
        try:
            doc = yamlpos.load(text, path)
            interp.interpolate(doc, env)
        except (yamlpos.ComposeFileError, interp.InterpolationError) as e:
            raise ComposeError(str(e)) from None
        docs.append(doc)
    return merge(docs), env


def _check_version(n: Node) -> None:
    v = n.string()
    if not re.fullmatch(r"3(\.\d+)?", v):
        n.fail(f"swarmlet deploys Compose files of version 3.x or without a version, not {v!r}")


def _network(stack: str, key: str, n: Node) -> StackNetwork:
    spec = pb.NetworkSpec(driver="overlay")
    spec.labels[NAMESPACE_LABEL] = stack
    name = f"{stack}_{key}"
    external = False
    if n.value is None:
        return StackNetwork(key, name, False, spec)
    for k, sub in n.mapping().items():
        if k == "driver":
            if sub.string() != "overlay":
                sub.fail(f"swarmlet networks use the overlay driver, not {sub.string()!r}")
        elif k == "driver_opts":
            _driver_opts(sub)
        elif k == "attachable":
            spec.attachable = sub.boolean()
        elif k == "external":
            if isinstance(sub.value, dict):
                external = True
                if sub.has("name"):
                    name = sub.child("name").string()
            else:
                external = sub.boolean()
                if external and not n.has("name"):
                    name = key
        elif k == "name":
            name = sub.string()
        elif k == "labels":
            for lk, lv in sub.dict_or_list().items():
                spec.labels[lk] = lv or ""
        elif k == "ipam":
            _ipam(sub, spec)
        elif k.startswith("x-"):
            continue
        else:
            sub.fail("not supported by swarmlet" if k in ("internal", "enable_ipv6") else "unknown key")
    if external:
        for k in n.keys():
            if k not in ("external", "name") and not k.startswith("x-"):
                n.child(k).fail("an external network is only named, not configured")
    spec.name = name
    return StackNetwork(key, name, external, spec)


# Docker's overlay driver takes these options; swarmlet's takes none: its
# NetworkSpec has no options, MTU or VXLAN id field, and `network create`
# has no --opt, --mtu or --vni to map them onto. So each key is refused at
# its own line, naming it, saying that no option is supported and why this
# one is not.
_DRIVER_OPTS = {
    "encrypted": "overlays are not encrypted (see docs/security.md)",
    "com.docker.network.driver.overlay.vxlanid_list": "the manager allocates each network's VXLAN id",
    "com.docker.network.driver.mtu": "the overlay's MTU is fixed at 1450",
}
_NO_DRIVER_OPTS = "not supported by swarmlet (its overlay driver supports no driver options)"


def _driver_opts(n: Node) -> None:
    """Top-level `networks.X.driver_opts`: an empty mapping passes; any key is
    refused rather than dropped: a network deployed without an option the
    file asks for (encryption above all; docker encrypts whatever the value
    of `encrypted`) would not be the network the file describes."""
    if n.value is None:
        return
    for k, sub in n.mapping().items():
        why = _DRIVER_OPTS.get(k)
        sub.fail(f"{_NO_DRIVER_OPTS}: {why}" if why else _NO_DRIVER_OPTS)


def _ipam(n: Node, spec: pb.NetworkSpec) -> None:
    for k, sub in n.mapping().items():
        if k == "driver":
            if sub.string() != "default":
                sub.fail("only the default IPAM driver is supported")
        elif k == "config":
            entries = sub.elements()
            if len(entries) > 1:
                sub.fail("swarmlet networks have one subnet")
            for e in entries:
                for ck, cv in e.mapping().items():
                    if ck == "subnet":
                        try:
                            spec.subnet = str(ipaddress.ip_network(cv.string(), strict=False))
                        except ValueError as err:
                            cv.fail(str(err))
                    elif ck == "gateway":
                        spec.gateway = cv.string()
                    else:
                        cv.fail("not supported by swarmlet (subnet and gateway only)")
        else:
            sub.fail("unknown key")


def _check_as_the_manager_does(spec: pb.ServiceSpec, n: Node) -> None:
    """The manager's own checks of a spec alone (templates, option
    combinations, bounds), so a service it would refuse stops the deploy
    before anything is created. Named at the service: the fault spans keys."""
    probe = pb.ServiceSpec()
    probe.CopyFrom(spec)
    opts.normalise_job(probe)
    try:
        validation.validate_service_spec(probe)
    except errors.Invalid as e:
        n.fail(str(e))


def _add_short_name(svc: pb.ServiceSpec, key: str, n: Node) -> None:
    """As `docker stack deploy`: a service is also reachable by its key in
    the file (`web` for app_web) on each of its networks, an alias after the
    file's own ones. Names compare as DNS does (case-insensitively), so a
    name given twice is kept once. Checked as the manager checks aliases
    (their number), named at the service's networks."""
    for att in svc.networks:
        kept: list[str] = []
        for alias in [*att.aliases, key]:
            if alias.lower() not in (a.lower() for a in kept):
                kept.append(alias)
        del att.aliases[:]
        att.aliases.extend(kept)
        try:
            validation.check_network_aliases(att, att.target)
        except errors.Invalid as e:
            where = n.child("networks") if n.has("networks") else n
            where.fail(f"{e} (the service's short name {key!r} is one of them)")


def load(
    name: str,
    paths: Sequence[str],
    environ: Mapping[str, str] | None = None,
) -> Stack:
    """The whole stack, checked. Raises ComposeError naming file, line and key."""
    check_stack_name(name)
    tree, env = read_files(paths, environ)
    top = root(tree)
    stack = Stack(name=name, model=yamlpos.plain({k: v for k, v in tree.items() if not k.startswith("x-")}))
    for k, sub in top.items():
        if k.startswith("x-"):
            continue
        if k not in _TOP_LEVEL:
            sub.fail("unknown top-level key")
        if k == "version":
            _check_version(sub)
        elif k == "name":
            stack.warnings.append(f"{sub.pos}: name: ignored: the stack's name comes from the command line ({name})")
    if not top.has("services") or not top.child("services").value:
        raise ComposeError(f"{tree.pos.file}: no services defined (services:)")
    networks = top.child("networks") if top.has("networks") else None
    if networks is not None and networks.value is not None:
        for key, sub in networks.mapping().items():
            if key.startswith("x-"):
                continue
            stack.networks[key] = _network(name, key, sub)

    used_default = False

    def network_name(key: str) -> str | None:
        nonlocal used_default
        if key in stack.networks:
            return stack.networks[key].name
        if key == DEFAULT_NETWORK:
            used_default = True
            return f"{name}_{DEFAULT_NETWORK}"
        return None

    base_dir = os.path.dirname(os.path.abspath(paths[0]))
    stack.objects = storage.read_objects(name, top, base_dir)
    for key, sub in top.child("services").mapping().items():
        if key.startswith("x-"):
            continue
        if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", key):
            sub.fail(f"invalid service name {key!r}")

        def warn(text: str, key: str = key) -> None:
            stack.warnings.append(f"services.{key}: {text}")

        svc = ServiceReader(name, key, sub, base_dir, env, network_name, warn, stack.objects).read()
        _check_as_the_manager_does(svc, sub)
        if not svc.networks:
            # As docker: a service that names no network joins the stack's default one.
            svc.networks.add(target=network_name(DEFAULT_NETWORK) or "")
        _add_short_name(svc, key, sub)
        stack.services[key] = svc
    if used_default and DEFAULT_NETWORK not in stack.networks:
        net = pb.NetworkSpec(name=f"{name}_{DEFAULT_NETWORK}", driver="overlay")
        net.labels[NAMESPACE_LABEL] = name
        stack.networks[DEFAULT_NETWORK] = StackNetwork(DEFAULT_NETWORK, net.name, False, net)
    return stack
