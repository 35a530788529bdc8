"""Overlay wiring on one host, with pyroute2 (no `ip` processes), reconciled
to what the dispatcher sends (level-triggered, like the executor). What to
write (names, entries, iptables text) is computed in rules.py; this module
applies it.

Per network on this host: bridge `swb<VNI>` and VXLAN device `swv<VNI>` (UDP
4789, learning off, ARP proxy on) enslaved to it. For every peer host on the
network an all-zeros FDB entry (broadcast/unknown go there); for every remote
endpoint an FDB entry MAC -> its host and a permanent neighbour entry IP -> MAC
on the VXLAN device, which answers the containers' ARP requests itself. MACs
are derived from IPs (core.allocator.mac_for), so the replicated state is all the
information needed: no gossip, no learning.

Per task container: a veth `swt<task id>` on the bridge, its peer moved into
the container's namespace as eth0 (eth1, ... for more networks), MTU 1450
(VXLAN's 50 bytes of overhead), the task's address and derived MAC. Then:
- the embedded DNS server (dns.py) at 127.0.0.11:53 in that namespace;
- service VIPs: iptables DNAT rules in the container's own namespace (nat
  OUTPUT, `statistic` for an even random spread over the running backends).
  IPVS would be the kernel's load balancer for this, but this kernel has no
  ip_vs; per-container DNAT needs nothing beyond netfilter, keeps one
  container's view independent of the others', and is replaced atomically by
  one iptables-restore when backends change.

Routing mesh (published ports): the host's ingress bridge holds this node's
address on the ingress network; iptables DNAT in the host namespace sends
connections to a published port to the service's running tasks over the
overlay (any node for ingress mode, local tasks for host mode), and SNAT to
the node's ingress address makes replies come back the same way. iptables is
run with iptables-restore (netfilter has no pyroute2 API in 0.9).

Everything named swb*/swv*/swt* in this namespace is ours: what the desired
state does not mention is deleted, so restarts and removed networks leak
nothing.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from swarmlet import errors
from swarmlet.agent.net import rules
from swarmlet.agent.net.dns import DnsServer, resolve
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.compat import restore_inet_ntop
from swarmlet.core.allocator import mac_for

if TYPE_CHECKING:
    from pyroute2 import IPRoute

log = logging.getLogger(__name__)

MTU = 1450  # VXLAN's 50 bytes of overhead under a 1500-byte underlay
VXLAN_PORT = 4789
NUD_PERMANENT = 0x80
ENODEV = 19
RECONCILE_PERIOD = 5.0


def _pyroute2() -> Any:
    """pyroute2, imported on first use: a node that takes part in no overlay
    network never loads it (about 8 MB of a worker's memory; issue 15)."""
    restore_inet_ntop()  # before pyroute2 binds it (see compat.py)
    import pyroute2
    import pyroute2.netlink.exceptions

    return pyroute2


def _iproute(**kwargs: Any) -> IPRoute:
    return _pyroute2().IPRoute(**kwargs)


def _netlink_error() -> type[Exception]:
    err: type[Exception] = _pyroute2().netlink.exceptions.NetlinkError
    return err


def _have_our_links() -> bool:
    """Whether this network namespace has links of ours, read from procfs
    (per process namespace, unlike /sys, which nsenter leaves as it was)."""
    try:
        with open("/proc/self/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return True  # cannot tell: look with netlink
    return any(rules.is_ours(line.split(":", 1)[0].strip()) for line in lines)


class NetworkNotReady(errors.Unavailable):
    """The assignment for a network of the task has not arrived yet: retry."""


def _prefixlen(net: pb.Network) -> int:
    return ipaddress.ip_network(net.subnet).prefixlen


@dataclass
class _Wired:
    task_id: str
    pid: int
    networks: list[str]  # network ids, in interface order
    addrs: dict[str, str]  # network id -> address
    rules: str = ""  # last iptables text applied in its namespace
    nameservers: list[str] = field(default_factory=list)  # its --dns servers: other names go there


@dataclass
class _View:
    by_id: dict[str, dpb.NetworkAssignment] = field(default_factory=dict)


class NetworkAgent:
    def __init__(self, node_addr: str) -> None:
        self._node_addr = node_addr
        self._lock = threading.RLock()
        self._view = _View()
        self._wired: dict[str, _Wired] = {}
        # task id -> number of networks, for the tasks allowed to stay wired;
        # None until the first assignment (then nothing is removed).
        self._live_tasks: dict[str, int] | None = None
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._ingress_text = ""
        self.dns = DnsServer(self.lookup, self.nameservers)
        self._thread = threading.Thread(target=self._loop, name="net-reconcile", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Leaves the wiring in place (containers keep running across agent
        restarts); DNS sockets close with the process."""
        self._stop.set()
        self._changed.set()
        self.dns.stop()

    # ---- inputs ----

    def update(self, networks: list[dpb.NetworkAssignment], tasks: list[pb.Task]) -> None:
        """A new assignment from the dispatcher: the networks of this node,
        and its tasks (wired ones not among the live tasks are released)."""
        with self._lock:
            self._view = _View(by_id={a.network.id: a for a in networks})
            self._live_tasks = {t.id: len(t.networks) for t in tasks if rules.stays_wired(t)}
        self._changed.set()

    # ---- per task (called by the executor) ----

    def attach(self, task: pb.Task, pid: int) -> None:
        """Wire a started container into its networks; idempotent. Raises
        NetworkNotReady if a network's assignment has not arrived yet."""
        if not task.networks:
            return
        with self._lock:
            cur = self._wired.get(task.id)
            if cur is not None and cur.pid == pid and self.dns.serving(task.id):
                return
            view = self._view
            for a in task.networks:
                if a.network_id not in view.by_id:
                    raise NetworkNotReady(f"network {a.network_id} is not assigned to this node yet")
            with _iproute() as ipr:
                for a in task.networks:
                    _ensure_network(ipr, view.by_id[a.network_id], self._node_addr)
                with _iproute(netns=f"/proc/{pid}/ns/net", flags=0) as cns:
                    for i, a in enumerate(task.networks):
                        _wire_iface(ipr, cns, task.id, i, view.by_id[a.network_id].network, a.addr, pid)
            w = _Wired(
                task.id,
                pid,
                [a.network_id for a in task.networks],
                {a.network_id: a.addr for a in task.networks},
                nameservers=list(task.spec.container.dns_config.nameservers),
            )
            self._wired[task.id] = w
            self._apply_container_rules(w)
            self.dns.add(task.id, pid)
        self._changed.set()  # host-mode ports may now point at it

    def release(self, task_id: str) -> None:
        """The task's container stopped or went: drop its DNS socket (which
        holds its namespace alive) and its veth."""
        with self._lock:
            w = self._wired.pop(task_id, None)
            self.dns.remove(task_id)
            if w is None:
                return
            with _iproute() as ipr:
                for i in range(len(w.networks)):
                    _del_link(ipr, rules.veth_name(task_id, i))
        self._changed.set()

    # ---- DNS ----

    def lookup(self, task_id: str, name: str, qtype: int) -> list[str] | None:
        """Addresses for `name` as seen from the task's networks; None if the
        name is not the cluster's (see dns.resolve)."""
        with self._lock:
            w = self._wired.get(task_id)
            if w is None:
                return None
            view = self._view
        return resolve(view.by_id, w.networks, name, qtype)

    def nameservers(self, task_id: str) -> list[str]:
        """The task's --dns servers, where names outside the cluster go."""
        with self._lock:
            w = self._wired.get(task_id)
            return list(w.nameservers) if w is not None else []

    # ---- reconcile ----

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._changed.wait(RECONCILE_PERIOD)
            self._changed.clear()
            if self._stop.is_set():
                return
            try:
                self.reconcile()
            except Exception:
                log.exception("network reconcile failed; retrying")
                self._stop.wait(1.0)
                self._changed.set()

    def reconcile(self) -> None:
        with self._lock:
            view = self._view
            live = self._live_tasks
            if not view.by_id and not self._wired and not any((live or {}).values()) and not _have_our_links():
                return  # no overlay here, and nothing left of one
            if live is not None:
                for tid in [t for t in self._wired if t not in live]:
                    self.release(tid)
                for tid in self.dns.task_ids():
                    if tid not in self._wired:
                        self.dns.remove(tid)
            wired = dict(self._wired)
            with _iproute() as ipr:
                keep_links: set[str] = set()
                for a in view.by_id.values():
                    _ensure_network(ipr, a, self._node_addr)
                    keep_links.update((rules.bridge_name(a.network.vni), rules.vxlan_name(a.network.vni)))
                for w in wired.values():
                    keep_links.update(rules.veth_name(w.task_id, i) for i in range(len(w.networks)))
                # Live tasks not wired by this process yet (just restarted):
                # their veths stay for the executor to adopt.
                for tid, n in (live or {}).items():
                    keep_links.update(rules.veth_name(tid, i) for i in range(n))
                if live is not None:
                    # Before the first assignment nothing is known: keep all.
                    _remove_strays(ipr, keep_links)
            for w in wired.values():
                try:
                    self._apply_container_rules(w)
                except Exception as e:
                    log.warning("task %s: VIP rules not applied: %s", w.task_id, e)
            self._apply_ingress(view, wired)

    def _apply_container_rules(self, w: _Wired) -> None:
        view = self._view
        services: list[dpb.ServiceEndpoints] = []
        for nid in w.networks:
            a = view.by_id.get(nid)
            if a is not None and not a.network.spec.ingress:
                services.extend(a.services)
        text = rules.container_rules(services)
        if text != w.rules:
            _iptables_restore(text, netns_pid=w.pid)
            w.rules = text

    def _apply_ingress(self, view: _View, wired: dict[str, _Wired]) -> None:
        ingress = next((a for a in view.by_id.values() if a.network.spec.ingress), None)
        local = {addr for w in wired.values() for addr in w.addrs.values()}
        text = rules.ingress_rules(ingress, local)
        if text == self._ingress_text:
            return
        if ingress is not None:
            # DNAT'ed connections are forwarded from the underlay to the bridge.
            _write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")
        _iptables_restore(text, noflush=True)
        for rule in rules.ingress_jumps():
            if _iptables(["-t", "nat", "-C", *rule]) != 0:
                _iptables(["-t", "nat", "-I", *rule])
        self._ingress_text = text


# ---- netlink ----


def _ensure_network(ipr: IPRoute, a: dpb.NetworkAssignment, node_addr: str) -> None:
    """The network's bridge and VXLAN device on this host, with the FDB and
    neighbour entries of its peers and remote endpoints."""
    net = a.network
    br, vx = rules.bridge_name(net.vni), rules.vxlan_name(net.vni)
    if not ipr.link_lookup(ifname=br):
        ipr.link("add", ifname=br, kind="bridge")
    bidx = ipr.link_lookup(ifname=br)[0]
    vidx_l = ipr.link_lookup(ifname=vx)
    if vidx_l:
        info = ipr.get_links(vidx_l[0])[0].get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
        if info.get_attr("IFLA_VXLAN_LOCAL") != node_addr or info.get_attr("IFLA_VXLAN_ID") != net.vni:
            ipr.link("del", index=vidx_l[0])  # our address changed: recreate
            vidx_l = []
    if not vidx_l:
        ipr.link(
            "add",
            ifname=vx,
            kind="vxlan",
            vxlan_id=net.vni,
            vxlan_local=node_addr,
            vxlan_port=VXLAN_PORT,
            vxlan_learning=0,
            vxlan_proxy=1,
        )
        vidx_l = ipr.link_lookup(ifname=vx)
    vidx = vidx_l[0]
    ipr.link("set", index=vidx, master=bidx, state="up")
    if net.spec.ingress and a.node_addr:
        # The host's own endpoint on the routing mesh: a fixed MAC derived
        # from its address, like every endpoint's.
        ipr.link("set", index=bidx, address=mac_for(a.node_addr), state="up")
        want = (a.node_addr, _prefixlen(net))
        have = {(x.get_attr("IFA_ADDRESS"), x["prefixlen"]) for x in ipr.get_addr(index=bidx, family=socket.AF_INET)}
        for addr, plen in have - {want}:
            ipr.addr("del", index=bidx, address=addr, prefixlen=plen)
        if want not in have:
            ipr.addr("add", index=bidx, address=want[0], prefixlen=want[1])
    else:
        ipr.link("set", index=bidx, state="up")
    want_fdb = rules.fdb_entries(a)
    have_fdb = set()
    for e in ipr.fdb("dump", ifindex=vidx):
        dst = e.get_attr("NDA_DST")
        if e["ifindex"] == vidx and dst:
            have_fdb.add((e.get_attr("NDA_LLADDR"), dst))
    for mac, dst in have_fdb - want_fdb:
        ipr.fdb("del", ifindex=vidx, lladdr=mac, dst=dst)
    for mac, dst in sorted(want_fdb - have_fdb):
        ipr.fdb("append", ifindex=vidx, lladdr=mac, dst=dst)
    want_nb = rules.neighbour_entries(a)
    have_nb = set()
    for n in ipr.neigh("dump", ifindex=vidx):
        if n["ifindex"] == vidx and n["family"] == socket.AF_INET and n.get_attr("NDA_DST"):
            have_nb.add((n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR")))
    for ip, mac in have_nb - want_nb:
        try:
            ipr.neigh("del", ifindex=vidx, dst=ip, lladdr=mac)
        except _netlink_error():
            pass
    for ip, mac in want_nb - have_nb:
        ipr.neigh("replace", ifindex=vidx, dst=ip, lladdr=mac, state=NUD_PERMANENT)


def _wire_iface(ipr: IPRoute, cns: IPRoute, task_id: str, index: int, net: pb.Network, addr: str, pid: int) -> None:
    """A veth from the network's bridge to the container's eth<index>."""
    host_if = rules.veth_name(task_id, index)
    inner = f"eth{index}"
    if cns.link_lookup(ifname=inner) and ipr.link_lookup(ifname=host_if):
        return  # wired by an earlier run of the agent
    _del_link(ipr, host_if)  # a half-done earlier attempt
    tmp = rules.peer_name(task_id, index)
    ipr.link("add", ifname=host_if, kind="veth", mtu=MTU, peer={"ifname": tmp, "net_ns_pid": pid})
    hidx = ipr.link_lookup(ifname=host_if)[0]
    bidx = ipr.link_lookup(ifname=rules.bridge_name(net.vni))[0]
    ipr.link("set", index=hidx, master=bidx, state="up")
    cidx = cns.link_lookup(ifname=tmp)[0]
    # Renamed while still down (the kernel refuses otherwise).
    cns.link("set", index=cidx, ifname=inner, mtu=MTU, address=mac_for(addr))
    cns.addr("add", index=cidx, address=addr, prefixlen=_prefixlen(net))
    cns.link("set", index=cidx, state="up")
    lo = cns.link_lookup(ifname="lo")
    if lo:
        cns.link("set", index=lo[0], state="up")


def _remove_strays(ipr: IPRoute, keep: set[str]) -> None:
    for link in ipr.get_links():
        name = link.get_attr("IFLA_IFNAME") or ""
        if rules.is_ours(name) and name not in keep:
            log.info("removing stale link %s", name)
            _del_link(ipr, name)


def _del_link(ipr: IPRoute, name: str) -> None:
    for idx in ipr.link_lookup(ifname=name):
        try:
            ipr.link("del", index=idx)
        except _netlink_error() as e:
            if getattr(e, "code", None) != ENODEV:  # gone meanwhile
                raise


# ---- iptables and sysctl ----


def _iptables_restore(text: str, netns_pid: int | None = None, noflush: bool = False) -> None:
    cmd = ["iptables-restore", "-w", "5"]
    if noflush:
        cmd.append("--noflush")
    if netns_pid is not None:
        cmd = ["nsenter", f"--net=/proc/{netns_pid}/ns/net", *cmd]
    r = subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"iptables-restore failed: {r.stderr.strip()}")


def _iptables(args: list[str]) -> int:
    return subprocess.run(["iptables", "-w", "5", *args], capture_output=True, timeout=30).returncode


def _write_sysctl(path: str, value: str) -> None:
    try:
        with open(path) as f:
            if f.read().strip() == value:
                return
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        log.warning("cannot set %s: %s", path, e)
