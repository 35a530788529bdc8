"""What managers accept from nodes, and the records of the cluster's secrets
(issue 13). Pure: the dispatcher and the control API apply these.

Reported values: a node's addresses and description feed the scheduler and
every node's VXLAN forwarding table, so a worker must not be able to claim
another node's address, a hostname it did not join with, or a value that
breaks wiring across the cluster. `accept_addresses` and `accept_description`
refuse or correct what a node reports, naming what is wrong.

Secrets: `with_rotated_raft_secret` / `with_raft_secret_retired` are the two
steps of a Raft secret rotation (the key keeper drives them), `public_view`
is the cluster object as inspect may show it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import bounds

MAX_IMAGES = 10_000
MAX_IMAGE_REF = 512
MAX_ENGINE_SUBNETS = 64
MAX_TEXT = 128
MAX_CPUS = 1 << 20  # a million CPUs
MAX_MEMORY = 1 << 52  # 4 PiB


class Refused(errors.PermissionDenied):
    """A node reported something about itself a manager does not accept."""


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def accept_addresses(addr: str, api_addr: str, raft_addr: str, peer_ip: str, cert_ips: Iterable[str]) -> tuple[str, str, str]:
    """(addr, api_addr, raft_addr) as the node may have them: its address
    must be one it is known by (the IP in its certificate, set at join, or
    the one it connects from), and its API and Raft endpoints must be on that
    address. Raises Refused naming the value."""
    known = {ip for ip in (_ip(x) for x in [*cert_ips, peer_ip]) if ip}
    ip = _ip(addr)
    if ip is None:
        raise Refused(f"reported address {addr[:64]!r} is not an IP address")
    if known and ip not in known:
        raise Refused(
            f"reported address {ip} is neither the address in the node's certificate nor the one it connects from "
            f"({', '.join(sorted(known))})"
        )
    out = [ip]
    for what, value in (("API", api_addr), ("Raft", raft_addr)):
        if not value:
            out.append("")
            continue
        host, sep, port = value.rpartition(":")
        host = host.strip("[]")
        if not sep or _ip(host) != ip or not port.isdigit() or not 0 < int(port) < 65536:
            raise Refused(f"reported {what} address {value[:64]!r} is not {ip}:PORT")
        out.append(f"{host}:{int(port)}" if ":" not in host else f"[{host}]:{int(port)}")
    return out[0], out[1], out[2]


def _text(value: str, what: str) -> str:
    if len(value) > MAX_TEXT or not value.isprintable():
        raise Refused(f"reported {what} is not a short printable string")
    return value


def accept_description(reported: pb.NodeDescription, stored: pb.Node | None) -> pb.NodeDescription:
    """The description to record from what a node reports: bounded values,
    and the hostname the node joined with (hostnames change only through
    the managers; a worker claiming `h1` must not receive h1's tasks)."""
    out = pb.NodeDescription()
    out.CopyFrom(reported)
    if stored is not None and stored.description.hostname:
        out.hostname = stored.description.hostname
    else:
        bounds.check_hostname(out.hostname)
    r = out.resources
    if not 0 <= r.nano_cpus <= MAX_CPUS * 1_000_000_000 or not 0 <= r.memory_bytes <= MAX_MEMORY:
        raise Refused("reported resources are out of range")
    _text(out.engine_version, "engine version")
    _text(out.os, "OS")
    _text(out.arch, "architecture")
    if len(out.images) > MAX_IMAGES:
        raise Refused(f"reported {len(out.images)} images, more than the limit of {MAX_IMAGES}")
    for ref in out.images:
        if len(ref) > MAX_IMAGE_REF or not ref.isprintable() or " " in ref:
            raise Refused(f"reported image reference {ref[:64]!r} is not one")
    if len(out.engine_subnets) > MAX_ENGINE_SUBNETS:
        raise Refused(f"reported {len(out.engine_subnets)} engine subnets, more than {MAX_ENGINE_SUBNETS}")
    for cidr in out.engine_subnets:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise Refused(f"reported engine subnet {cidr[:64]!r} is not a subnet") from None
    return out


def check_joining_hostname(hostname: str) -> None:
    """A joining node's hostname (it is fixed from then on)."""
    if not hostname:
        return
    bounds.check_hostname(hostname)


# ---------------------------------------------------------------- the cluster's secrets


def with_rotated_raft_secret(cluster: pb.Cluster, secret: bytes, reason: str, now: float) -> pb.Cluster:
    """A copy of `cluster` with a new Raft secret. The one it replaces stays
    accepted (not spoken) until every manager has the new one; a rotation
    during a rotation drops the oldest at once."""
    out = pb.Cluster()
    out.CopyFrom(cluster)
    out.raft_secret_previous = cluster.raft_secret
    out.raft_secret = secret
    out.raft_secret_epoch = cluster.raft_secret_epoch + 1
    out.raft_secret_rotated_at = now
    out.raft_secret_rotation = reason
    return out


def with_raft_secret_retired(cluster: pb.Cluster) -> pb.Cluster:
    """A copy of `cluster` that no longer accepts the previous Raft secret."""
    out = pb.Cluster()
    out.CopyFrom(cluster)
    out.raft_secret_previous = b""
    return out


SECRET_FIELDS = ("raft_secret", "raft_secret_previous", "worker_token", "manager_token", "unlock_key")


def public_view(cluster: pb.Cluster) -> pb.Cluster:
    """The cluster object as inspect output may show it: no CA key, join
    tokens, Raft secrets or unlock key (join-token and unlock-key show
    theirs on purpose; nothing else does)."""
    out = pb.Cluster()
    out.CopyFrom(cluster)
    for name in SECRET_FIELDS:
        out.ClearField(name)
    out.root_ca.ClearField("key_pem")
    return out
