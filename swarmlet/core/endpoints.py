"""What each node needs to wire its overlay networks, derived from the
replicated state (no gossip). Pure: (snapshot) -> per-node NetworkAssignments,
sent by the dispatcher in every SessionMessage.

A node takes part in a network when it has a live task on it, and in the
ingress network always (the routing mesh answers on every node). For each such
network it gets: the other participating nodes (VXLAN flood entries), every
endpoint on other nodes (neighbour and FDB entries: wired as soon as a task is
assigned, so it is reachable before it reports RUNNING), and the services on
the network with their backends: the tasks that run now (DNS answers and VIP
load balancing; a stopping task leaves them at once).
"""

from __future__ import annotations

from collections import defaultdict

from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import allocator as al
from swarmlet.core import state as st
from swarmlet.core import tasks as tk


def all_assignments(snap: st.Snapshot) -> dict[str, list[dpb.NetworkAssignment]]:
    """node id -> the networks it takes part in. O(tasks + nodes x networks)."""
    node_addr = {nid: n.status.addr for nid, n in snap.nodes.items()}
    nets = {nid: n for nid, n in snap.networks.items() if n.vni}
    # network id -> [(task, addr)] of wired tasks
    wired: dict[str, list[tuple[pb.Task, str]]] = defaultdict(list)
    members: dict[str, set[str]] = defaultdict(set)  # network id -> node ids
    for t in snap.tasks.values():
        # Wired as soon as assigned, so reachable before it reports RUNNING.
        if not tk.placed(t):
            continue
        for att in t.networks:
            if att.network_id in nets:
                wired[att.network_id].append((t, att.addr))
                members[att.network_id].add(t.node_id)
    for n in nets.values():
        if n.spec.ingress:
            members[n.id].update(nid for nid in n.node_addrs if nid in snap.nodes)

    services: dict[str, list[dpb.ServiceEndpoints]] = defaultdict(list)
    for s in sorted(snap.services.values(), key=lambda s: s.spec.name):
        vips = {v.network_id: v.addr for v in s.virtual_ips}
        for net_id in al.wanted_networks(snap, s):
            if net_id not in nets:
                continue
            se = dpb.ServiceEndpoints(
                service_id=s.id,
                name=s.spec.name,
                mode=s.spec.endpoint.mode,
                vip=vips.get(net_id, ""),
                ports=s.spec.endpoint.ports,
                # Issue 17: more names on this network (docker stack deploy).
                aliases=sorted({a for att in s.spec.networks if att.target == net_id for a in att.aliases}),
            )
            for t, addr in sorted(wired.get(net_id, []), key=lambda x: x[0].id):
                if t.service_id == s.id and tk.serving(t):
                    se.backends.add(task_id=t.id, addr=addr, node_addr=node_addr.get(t.node_id, ""))
            services[net_id].append(se)

    out: dict[str, list[dpb.NetworkAssignment]] = defaultdict(list)
    for net_id in sorted(nets):
        n = nets[net_id]
        eps = sorted(wired.get(net_id, []), key=lambda x: x[1])
        node_eps = sorted(n.node_addrs.items()) if n.spec.ingress else []
        for me in sorted(members.get(net_id, ())):
            a = dpb.NetworkAssignment(network=n, node_addr=n.node_addrs.get(me, "") if n.spec.ingress else "")
            peers = sorted({node_addr[m] for m in members[net_id] if m != me and node_addr.get(m)})
            a.peers.extend(peers)
            for t, addr in eps:
                if t.node_id != me and node_addr.get(t.node_id):
                    a.remote.add(task_id=t.id, addr=addr, node_addr=node_addr[t.node_id])
            for nid, addr in node_eps:
                if nid != me and node_addr.get(nid):
                    a.remote.add(task_id="", addr=addr, node_addr=node_addr[nid])
            a.services.extend(services.get(net_id, []))
            out[me].append(a)
    return out
