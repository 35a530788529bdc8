"""The cluster and its membership: join tokens, registering joining nodes,
manager promotion and demotion (Raft membership, one change at a time across
managers), role certificates, backups."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from swarmlet import errors
from swarmlet.api import ca_pb2
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import cluster as cl
from swarmlet.core import lookup, pki, trust
from swarmlet.core import state as st
from swarmlet.manager import ca
from swarmlet.manager.control.base import StoreAccess, user_error
from swarmlet.manager.control.pki import record_issued
from swarmlet.manager.store import Store, StoreError


class ClusterControl:
    def __init__(self, access: StoreAccess, on_manager_removed: Callable[[pb.Node], None] | None = None) -> None:
        self._a = access
        # Called once a manager left the Raft membership (the Raft secret is
        # rotated then: security.py).
        self._on_manager_removed = on_manager_removed

    @property
    def _store(self) -> Store:  # the Raft handle itself: membership is not a state write
        return self._a.store

    # ---- tokens ----
    def join_token(self, req: cpb.JoinTokenRequest, api_addr: str) -> cpb.JoinTokenResponse:
        if req.role not in ("worker", "manager"):
            raise errors.Invalid(f"unknown role {req.role!r}: use worker or manager")
        cluster = self._a.snap().cluster
        if cluster is None:
            raise errors.FailedPrecondition("the cluster is not initialised")
        if req.rotate:
            new = pb.Cluster()
            new.CopyFrom(cluster)
            tok = ca.new_join_token(cluster.root_ca.digest)
            if req.role == "worker":
                new.worker_token = tok
            else:
                new.manager_token = tok
            self._a.propose([st.put(new)])
            cluster = self._a.snap().cluster
            assert cluster is not None
        token = cluster.worker_token if req.role == "worker" else cluster.manager_token
        return cpb.JoinTokenResponse(token=token, api_addr=api_addr)

    # ---- node registration (called by the CA on join) ----
    def register_node(
        self,
        node_id: str,
        role: str,
        request: ca_pb2.IssueNodeCertificateRequest,
        peer_ip: str,
        issued: pb.NodeCertificate | None = None,
    ) -> list[str]:
        is_manager = role == "manager"
        if is_manager and not request.raft_addr:
            raise errors.Invalid("a joining manager must give its Raft address")
        # Issue 13: a hostname is fixed from now on; addresses are IPs, and
        # the node's endpoints are on its own address.
        trust.check_joining_hostname(request.hostname)
        addr, api_addr, raft_addr = trust.accept_addresses(
            request.addr or peer_ip, request.api_addr, request.raft_addr, peer_ip, [request.addr] if request.addr else []
        )
        checked = ca_pb2.IssueNodeCertificateRequest()
        checked.CopyFrom(request)
        checked.addr, checked.api_addr, checked.raft_addr = addr, api_addr, raft_addr
        node = cl.joined_node(node_id, is_manager, checked, peer_ip, time.time())
        if issued is not None:
            node.issued.append(issued)
        if is_manager:
            self.add_manager(node, create=True)
        else:
            self._a.propose([st.put(node, create=True)])
        # No read barrier here: after adding a second manager nothing commits
        # until that manager runs, and it starts only once this returns.
        return cl.manager_addrs(self._a.local())

    # ---- Raft membership (one change at a time, across managers) ----
    def _mark_membership(self, change: str) -> None:
        """Claim the cluster-wide membership-change marker (a versioned write
        on the Cluster object: two managers racing cannot both win)."""
        cluster = self._a.snap().cluster
        if cluster is None:
            raise errors.FailedPrecondition("the cluster is not initialised")
        now = time.time()
        if cl.membership_change_in_progress(cluster, now):
            raise errors.FailedPrecondition(
                f"another manager membership change is in progress ({cluster.membership_change}); try again shortly"
            )
        self._a.propose([st.put(cl.with_membership_marker(cluster, change, now))])

    def _clear_membership(
        self, extra: list[spb.StoreAction] | None = None, timeout: float = 30.0, revoke: list[pb.NodeCertificate] | None = None
    ) -> None:
        """Clear the marker (with `extra` actions, and refusing the
        certificates in `revoke` from now on) in one batch."""
        deadline = time.monotonic() + timeout
        while True:
            cluster = self._a.local().cluster
            if cluster is None:  # nothing to clear: the marker lives on the cluster object
                return
            cleared = cl.with_membership_marker(cluster, "", 0)
            cleared = pki.with_revoked(cleared, revoke or []) or cleared
            try:
                self._store.propose([st.put(cleared)] + list(extra or []), timeout=10)
                return
            except StoreError as e:
                if time.monotonic() > deadline:
                    raise user_error(e) from None
                time.sleep(0.2)

    def add_manager(self, node: pb.Node, create: bool) -> None:
        """Record `node` as a manager and add it to the Raft membership. The
        Raft change may only commit once the new manager runs (a cluster of one
        or two needs it for a majority), so the marker is cleared by a thread
        that waits for that commit."""
        addr = node.manager_status.raft_addr
        self._mark_membership(f"add {addr}")
        # Wait for the commit whenever the members we have can make it: a
        # promotion answered before its Raft change committed is lost if the
        # leader dies first (issue 14: the node then ran as a manager Raft
        # never knew). Only a cluster of one or two must wait for the newcomer.
        members = self._store.members()
        wait = cl.add_can_commit_without_newcomer(members, self._store.reachable())
        try:
            self._a.propose([st.put(node, create=create)])
            committed = self._store.change_membership("add", addr, wait_commit=wait)
        except errors.SwarmletError as e:
            self._clear_membership()
            raise user_error(e) if isinstance(e, StoreError) else e from None
        if committed:
            self._clear_membership()
        else:
            threading.Thread(
                target=self._clear_membership, kwargs={"timeout": 120.0}, daemon=True, name="membership-clear"
            ).start()

    def raft_peers(self) -> list[str]:
        return self._store.members()

    # ---- roles ----
    def change_role(self, req: cpb.ChangeRoleRequest) -> cpb.NodeResponse:
        if req.role not in (pb.NodeSpec.MANAGER, pb.NodeSpec.WORKER):
            raise errors.Invalid(f"unknown role {req.role}")
        snap = self._a.snap()
        node = lookup.node(snap, req.ref)
        name = lookup.node_name(node)
        if req.role == pb.NodeSpec.MANAGER:
            if node.role == pb.NodeSpec.MANAGER:
                raise errors.FailedPrecondition(f"node {name} is already a manager")
            if node.status.state != pb.NodeStatus.READY:
                raise errors.FailedPrecondition(f"node {name} is not ready: a node must be up to be promoted")
            if not node.raft_addr:
                raise errors.FailedPrecondition(f"node {name} has not reported a Raft address yet; try again")
            # The node's agent sees desired_role in its session and asks for a
            # manager certificate (Dispatcher.RenewRole), which adds it to Raft.
            new = pb.Node()
            new.CopyFrom(node)
            new.spec.desired_role = pb.NodeSpec.MANAGER
            self._a.propose([st.put(new)])
            return cpb.NodeResponse(node=self._a.local().nodes.get(node.id, new))
        # demotion
        if node.role != pb.NodeSpec.MANAGER:
            raise errors.FailedPrecondition(f"node {name} is already a worker")
        managers = [n for n in snap.nodes.values() if n.role == pb.NodeSpec.MANAGER]
        if len(managers) <= 1:
            raise errors.FailedPrecondition(
                f"attempting to demote the last manager of the swarm ({name}): the swarm would have no manager left"
            )
        addr = node.manager_status.raft_addr
        members = self._store.members()
        if not req.force and not cl.can_remove_member(members, self._store.reachable(), addr):
            raise errors.FailedPrecondition(
                f"can't demote {name}: removing it from the managers would leave the swarm without quorum "
                f"({len(members)} managers, {len(self._store.reachable())} reachable). "
                "Bring unreachable managers back first, or use --force"
            )
        # Wanted as a worker from now on: if the leader dies once the Raft
        # removal committed but before the record says worker, the repair
        # finishes the demotion instead of adding the node back.
        leaving = pb.Node()
        leaving.CopyFrom(node)
        leaving.spec.desired_role = pb.NodeSpec.WORKER
        self._a.propose([st.put(leaving)])
        try:
            self.remove_manager(self._a.local().nodes.get(node.id, leaving))
        except errors.SwarmletError:
            self._restore_desired_manager(node.id)
            raise
        return cpb.NodeResponse(node=self._a.local().nodes.get(node.id, node))

    def _restore_desired_manager(self, node_id: str) -> None:
        """A demotion that did not remove the node from Raft: it stays wanted
        as a manager (best effort; the repair adds nothing it does not need)."""
        cur = self._a.local().nodes.get(node_id)
        if cur is None or cur.manager_status.raft_addr not in self._store.members():
            return
        back = pb.Node()
        back.CopyFrom(cur)
        back.spec.desired_role = pb.NodeSpec.MANAGER
        try:
            self._store.propose([st.put(back)])
        except StoreError:
            pass

    # ---- repairs (the leader, periodically: membership_repair.py) ----
    def repair_membership(self) -> list[str]:
        """Make the Raft membership and the store's managers agree again after
        a change a leader's death interrupted (core.cluster.membership_repairs).
        Leader only; does nothing while a change is in progress. Returns what
        it did, for the log."""
        snap = self._a.local()
        cluster = snap.cluster
        if cluster is None or cl.membership_change_in_progress(cluster, time.time()):
            return []
        add, finish = cl.membership_repairs(snap, self._store.members())
        done = []
        for node in finish:
            self._store.propose([st.put(cl.as_worker(node))])
            done.append(f"finished the demotion of {lookup.node_name(node)}")
        for node in add:
            self.add_manager(node, create=False)
            done.append(f"added manager {lookup.node_name(node)} ({node.manager_status.raft_addr}) back to Raft")
        return done

    def remove_manager(self, node: pb.Node) -> None:
        """Take `node` out of the Raft membership and record it as a worker."""
        addr = node.manager_status.raft_addr
        self._mark_membership(f"remove {addr}")
        try:
            if addr == self._store.self_addr and self._store.is_leader():
                # pysyncobj refuses to remove the leader: hand leadership over;
                # the removal below is then forwarded to the new leader.
                self._store.transfer_leadership()
            self._store.change_membership("remove", addr)
        except StoreError as e:
            self._clear_membership()
            raise user_error(e) from None
        cur = self._a.local().nodes.get(node.id)
        extra = [st.put(cl.as_worker(cur))] if cur is not None else []
        # Its manager certificates are refused from now on, everywhere (issue
        # 13): it renews as a worker through RenewRole, which accepts them.
        self._clear_membership(extra, revoke=pki.node_certificates(cur, pki.ROLE_MANAGER) if cur is not None else [])
        if self._on_manager_removed is not None:
            self._on_manager_removed(node)  # the Raft secret is rotated (issue 13)

    def renew_role(self, node_id: str, csr_pem: bytes) -> tuple[bytes, str, bytes, list[str]]:
        """Dispatcher.RenewRole: a certificate for the role the cluster wants
        the node to have; for a promotion also adds it to Raft.
        Returns (cert, role, raft secret, raft peers)."""
        snap = self._a.snap()
        node = snap.nodes.get(node_id)
        cluster = snap.cluster
        if node is None or cluster is None:
            raise errors.NotFound(f"node {node_id} is not a member of this cluster")
        want = node.spec.desired_role
        role = "manager" if want == pb.NodeSpec.MANAGER else "worker"
        cert = ca.sign_node_csr(
            cluster.root_ca, csr_pem, node_id, role, cluster.id, ca.san_ip(node.status.addr), pki.cert_expiry(cluster)
        )
        if want == pb.NodeSpec.MANAGER:
            if node.role != pb.NodeSpec.MANAGER:
                # The issued certificate is recorded with the promotion itself:
                # once the Raft membership grew, nothing commits until the new
                # manager runs.
                issued = pki.with_issued(node, ca.issued_record(cert, role), time.time())
                self.add_manager(cl.as_manager(issued), create=False)
            elif node.manager_status.raft_addr not in self._store.members():
                # A retry after an add that was lost with its leader.
                self.add_manager(node, create=False)
            return cert, role, cluster.raft_secret, self._store.members()
        if node.role == pb.NodeSpec.MANAGER:
            raise errors.FailedPrecondition("the node is still a Raft member; demote it first")
        self._record_issued(node_id, ca.issued_record(cert, role))
        return cert, role, b"", []

    def _record_issued(self, node_id: str, record: pb.NodeCertificate) -> None:
        record_issued(self._a, node_id, record)
