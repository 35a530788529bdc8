"""How a host enters and leaves a cluster: init, join, leave, restore,
force-new-cluster, and resume after a restart.

Membership owns what the node is in its cluster (`node`, `creds`, `addrs`)
and keeps it on disk (files.py); the running parts (Raft store, servers,
agent) are started and stopped through `ClusterParts`, which the composition
root (daemon.py) implements. Every operation runs under `lock`.

Durability rule: the membership files are written last, once the node is
really a member (its Raft founded or started), so that an init, join or
restore that fails before that leaves no membership on disk: the host stays
a fresh node.

Autolock (issue 13): a manager's secret files are encrypted with its data
key, which autolock keeps wrapped by the swarm's unlock key. A manager that
restarts then resumes nothing: it is `locked` until `unlock` is given the key
(or an older one, if the key was rotated while it was down).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

import grpc

from swarmlet import atrest, errors, rpc, tls
from swarmlet.api import ca_pb2, ca_pb2_grpc
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import allocator
from swarmlet.core import cluster as cl
from swarmlet.core import state as st
from swarmlet.ids import new_id
from swarmlet.manager import backup as bk
from swarmlet.manager import ca
from swarmlet.node import addresses
from swarmlet.node.addresses import Advertised
from swarmlet.node.certs import check_at_start
from swarmlet.node.config import DaemonConfig
from swarmlet.node.files import NodeFiles, NodeState

if TYPE_CHECKING:  # the Raft store (pysyncobj) is loaded only on managers (daemon.py)
    from swarmlet.manager.store import Store

log = logging.getLogger(__name__)

ALREADY_MEMBER = "This node is already part of a swarm. Use 'swarmlet leave' to leave this swarm and join another one."
NOT_IN_CLUSTER = "This node is not part of a swarm: run 'swarmlet init' or 'swarmlet join' first."
LEAVE_AS_MANAGER = (
    "You are attempting to leave the swarm on a node that is participating as a manager. "
    "Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message."
)
LOCKED = (
    "This manager is locked: the swarm is autolocked and this daemon restarted. Run 'swarmlet unlock' and enter "
    "the unlock key (another manager shows it with 'swarmlet unlock-key')."
)
NOT_LOCKED = "This node is not locked."

# A one-member Raft elects itself within one election timeout; this bounds it.
LEADERSHIP_TIMEOUT = 10.0
# Writing a cluster's objects into a new Raft (a restored backup may be large).
SEED_WRITE_TIMEOUT = 30.0
# Certificate issuance by a manager (it commits the new node first).
ISSUE_TIMEOUT = 30.0
# Reading the manager's CA certificate from its join port.
FETCH_CA_TIMEOUT = 5.0


class ClusterParts(Protocol):
    """The running parts membership starts and stops (daemon.Daemon)."""

    @property
    def store(self) -> Store | None: ...

    def start_manager(self, addrs: Advertised, raft_secret: bytes, peers: list[str], epoch: int = 0) -> Store:
        """Start the Raft store and the manager's loops; `peers` are the Raft
        members to reach (an empty list founds a one-member Raft); `epoch`
        is the Raft secret's (how many rotations made it)."""
        ...

    def start_services(self, addrs: Advertised, node: NodeState, creds: tls.NodeCredentials) -> None:
        """Start the node's gRPC server and its agent."""
        ...

    def shutdown(self, remove_containers: bool) -> None:
        """Stop every running part; with remove_containers, remove the tasks'
        containers first and wait until they are gone."""
        ...


class Membership:
    def __init__(self, cfg: DaemonConfig, files: NodeFiles, parts: ClusterParts) -> None:
        self.files = files
        self.parts = parts
        self.hostname = cfg.hostname
        self.addrs = Advertised(cfg.advertise_addr, cfg.join_port, cfg.raft_port, cfg.api_port)
        self.lock = threading.RLock()
        self.node: NodeState | None = None
        self.creds: tls.NodeCredentials | None = None
        # Set while this manager waits for its unlock key: its saved
        # membership, which nothing runs yet.
        self.locked: NodeState | None = None

    # ---- after a restart ----
    def resume(self) -> None:
        """Rejoin the cluster this host belonged to before a restart (nothing
        when it belonged to none). Raises files.NodeFileError when the files
        are there but unusable. A manager whose data key is wrapped (autolock)
        stays locked: see `unlock`."""
        with self.lock:
            node = self.files.load_node()
            if node is None:
                return
            if self.files.locked():
                self.locked = node
                log.warning("%s", LOCKED)
                return
            if self.files.has_data_key():
                self.files.unlock(None)
            self._resume(node)

    def unlock(self, req: cpb.UnlockRequest) -> cpb.UnlockResponse:
        """Unwrap the data key with the unlock key, then resume as after any
        restart. A wrong key changes nothing."""
        with self.lock:
            node = self.locked
            if node is None:
                raise errors.FailedPrecondition(NOT_LOCKED)
            if not req.unlock_key.strip():
                raise errors.Invalid("an unlock key is required")
            self.files.unlock(req.unlock_key.strip())  # atrest.InvalidUnlockKey: nothing changed
            self.locked = None
            log.info("unlocked: resuming")
            try:
                self._resume(node)
            except BaseException:
                self.files.data_key = None
                self.locked = node
                raise
            return cpb.UnlockResponse()

    def _resume(self, node: NodeState) -> None:
        creds = self.files.load_credentials()
        if creds is None:
            return
        addrs = self.addrs
        if node.addr != addrs.ip:
            # The cluster knows this node (its Raft member, its certificate)
            # by the address it joined with.
            log.warning("advertising %s, the address this node joined with, not %s", node.addr, addrs.ip)
            addrs = addrs.with_ip(node.addr)
        log.info("resuming as %s node %s of cluster %s", node.role, node.node_id, node.cluster_id)
        level, message = _certificate_at_start(creds)
        if level:
            log.log(level, "%s", message)
        if node.role == "manager":
            if self.files.data_key is None:
                self.files.ensure_data_key()  # a manager from before encryption at rest
            secret, epoch = self.files.read_raft_secret()
            self.files.write_raft_secret(secret, epoch)  # sealed, if it was not yet
            self.files.save_credentials(creds)  # likewise its TLS key
            self.parts.start_manager(addrs, secret, node.raft_peers, epoch)
        self.node, self.creds, self.addrs = node, creds, addrs
        self.parts.start_services(addrs, node, creds)

    # ---- init ----
    def init(self, req: cpb.InitRequest) -> cpb.InitResponse:
        if req.force_new_cluster:
            if req.autolock:
                raise errors.Invalid("--autolock cannot be combined with --force-new-cluster: use 'cluster update' after")
            return self.force_new_cluster(req)
        with self.lock:
            self._refuse_if_member(ALREADY_MEMBER)
            allocator.parse_pool(req.default_address_pool, req.default_subnet_size)
            cl.check_heartbeat_period(req.dispatcher_heartbeat)
            addrs = self._addrs_for(req.advertise_addr)
            addresses.check_ports_free(addrs.ip, [("join", addrs.join_port), ("raft", addrs.raft_port), ("api", addrs.api_port)])
            root = ca.create_root_ca()
            cluster_id, node_id = new_id(), new_id()
            key_pem, cert_pem = ca.issue_local_certificate(root, node_id, "manager", cluster_id, addrs.ip)
            creds = tls.NodeCredentials(
                key_pem=key_pem, cert_pem=cert_pem, ca_pem=root.cert_pem, node_id=node_id, role="manager", cluster_id=cluster_id
            )
            cluster = pb.Cluster(
                id=cluster_id,
                spec=cl.initial_spec(req.default_address_pool, req.default_subnet_size, req.dispatcher_heartbeat),
                root_ca=root,
                worker_token=ca.new_join_token(root.digest),
                manager_token=ca.new_join_token(root.digest),
            )
            if req.autolock:
                cluster.spec.autolock = True
                cluster.unlock_key = atrest.new_unlock_key()
            me = self._self_node(node_id, addrs)

            def objects(raft_secret: bytes) -> list[list[spb.StoreAction]]:
                cluster.raft_secret = raft_secret
                return [[st.put(cluster, create=True), st.put(me, create=True)]]

            node = NodeState(node_id=node_id, role="manager", cluster_id=cluster_id, addr=addrs.ip, managers=[addrs.api])
            self._found(addrs, node, creds, objects)
            if cluster.spec.autolock:
                # Wrapped now, not when the key keeper first runs: a restart
                # right after init must already be locked.
                self.files.wrap_data_key(cluster.unlock_key)
            return _init_response(node_id, cluster, addrs)

    # ---- join ----
    def join(self, req: cpb.JoinRequest) -> cpb.JoinResponse:
        with self.lock:
            self._refuse_if_member(ALREADY_MEMBER)
            addrs = self._addrs_for(req.advertise_addr)
            addresses.check_ports_free(addrs.ip, [("api", addrs.api_port)])
            digest, _ = tls.parse_token(req.token)
            remote = req.remote_addr if ":" in req.remote_addr else f"{req.remote_addr}:{addrs.join_port}"
            # The token's digest authenticates the manager before we trust it.
            ca_pem = tls.fetch_remote_ca(remote, digest, timeout=FETCH_CA_TIMEOUT)
            key_pem = tls.new_node_key()
            resp = _issue_certificate(
                remote,
                ca_pem,
                ca_pb2.IssueNodeCertificateRequest(
                    token=req.token,
                    csr_pem=tls.make_csr(key_pem),
                    hostname=self.hostname,
                    addr=addrs.ip,
                    api_addr=addrs.api,
                    raft_addr=addrs.raft,
                ),
            )
            creds = _joined_credentials(key_pem, resp, ca_pem)
            node = NodeState(
                node_id=resp.node_id,
                role=resp.role,
                cluster_id=creds.cluster_id,
                addr=addrs.ip,
                managers=list(resp.managers) or [remote],
                raft_peers=list(resp.raft_peers),
            )
            if resp.role == "manager":
                # Already a Raft member (the CA added it): start the store with
                # the current members as partners; the leader sends it the log
                # or a snapshot.
                self.files.new_raft_dir(resp.raft_secret)
                try:
                    self.parts.start_manager(addrs, resp.raft_secret, list(resp.raft_peers))
                except BaseException:
                    self.parts.shutdown(remove_containers=False)
                    self.files.reset_raft()
                    self.files.drop_data_key()
                    raise
            self._activate(addrs, node, creds)
            return cpb.JoinResponse(node_id=resp.node_id, role=resp.role)

    # ---- leave ----
    def leave(self, req: cpb.LeaveRequest) -> cpb.LeaveResponse:
        with self.lock:
            if self.locked is not None:
                # Nothing runs on a locked manager: with --force it forgets
                # its membership (its containers stay for the engine).
                if not req.force:
                    raise errors.FailedPrecondition(LOCKED + " To leave without unlocking, use --force.")
                self.files.forget()
                self.locked = None
                return cpb.LeaveResponse()
            if self.node is None:
                raise errors.FailedPrecondition(NOT_IN_CLUSTER)
            if self.node.role == "manager" and not req.force:
                raise errors.FailedPrecondition(LEAVE_AS_MANAGER)
            # Returns once the containers are gone: a host that left runs no tasks.
            self.parts.shutdown(remove_containers=True)
            self.files.forget()
            self.node = self.creds = None
            return cpb.LeaveResponse()

    # ---- disaster recovery ----
    def restore(self, req: cpb.RestoreRequest) -> cpb.InitResponse:
        """Bring up a one-manager cluster on this (fresh) host from a backup."""
        with self.lock:
            self._refuse_if_member(
                "This node is already part of a swarm: restore a backup on a fresh host (or 'swarmlet leave --force' first)."
            )
            try:
                snap = bk.decode(req.data, req.key)
            except bk.BackupError as e:
                raise errors.Invalid(str(e)) from None
            addrs = self._addrs_for(req.advertise_addr)
            cluster = snap.cluster
            assert cluster is not None  # decode() refuses a backup without one
            node_id = new_id()
            key_pem, cert_pem = ca.issue_local_certificate(cluster.root_ca, node_id, "manager", cluster.id, addrs.ip)
            creds = tls.NodeCredentials.from_pems(key_pem, cert_pem, ca.trust_bundle(cluster.root_ca))
            node = NodeState(node_id=node_id, role="manager", cluster_id=cluster.id, addr=addrs.ip, managers=[addrs.api])
            me = self._self_node(node_id, addrs)
            self._found(addrs, node, creds, lambda secret: bk.bootstrap_batches(snap, me, secret, "restored from a backup"))
            return _init_response(node_id, cluster, addrs)

    def force_new_cluster(self, req: cpb.InitRequest) -> cpb.InitResponse:
        """Recover a manager whose majority is gone for good: keep its state
        (services, tasks, nodes), drop every other manager from Raft and become
        a one-manager cluster that can be grown again."""
        with self.lock:
            store = self.parts.store
            if self.node is None or self.creds is None or store is None:
                raise errors.FailedPrecondition(
                    "--force-new-cluster recovers a manager of an existing swarm: this node is not a manager"
                )
            snap = store.snapshot()
            if snap.cluster is None:
                raise errors.FailedPrecondition("this manager holds no cluster state to recover from")
            log.warning("forcing a new cluster from local state at version %d", snap.version)
            node, creds, addrs = self.node, self.creds, self.addrs
            self.parts.shutdown(remove_containers=False)
            node.managers = [addrs.api]
            me = self._self_node(node.node_id, addrs)
            self._found(addrs, node, creds, lambda secret: bk.bootstrap_batches(snap, me, secret, "removed by force-new-cluster"))
            # The same cluster (id, CA, tokens) under a new Raft secret.
            return _init_response(node.node_id, snap.cluster, addrs)

    # ---- kept up to date while running ----
    def record_managers(self, managers: list[str]) -> None:
        """The managers' API addresses, as the dispatcher last told the agent:
        where the agent reconnects after a restart."""
        with self.lock:
            if self.node is not None and managers and managers != self.node.managers:
                self.node.managers = list(managers)
                self.files.save_node(self.node)

    def record_raft_members(self, members: list[str]) -> None:
        """The live Raft membership, so that a restart before the first Raft
        snapshot still knows its partners."""
        with self.lock:
            if self.node is not None and members != self.node.raft_peers:
                self.node.raft_peers = list(members)
                self.files.save_node(self.node)

    # ---- the steps ----
    def _refuse_if_member(self, message: str) -> None:
        if self.locked is not None:
            raise errors.FailedPrecondition(LOCKED)
        if self.node is not None:
            raise errors.FailedPrecondition(message)

    def _addrs_for(self, advertise_addr: str) -> Advertised:
        """This node's addresses, with the advertise address a request gives."""
        if not advertise_addr:
            return self.addrs
        return self.addrs.with_ip(addresses.resolve_advertise_addr(advertise_addr))

    def _self_node(self, node_id: str, addrs: Advertised) -> pb.Node:
        """This node's record as the one manager of a new Raft."""
        return pb.Node(
            id=node_id,
            role=pb.NodeSpec.MANAGER,
            spec=pb.NodeSpec(desired_role=pb.NodeSpec.MANAGER, availability=pb.NodeSpec.ACTIVE),
            description=pb.NodeDescription(hostname=self.hostname),
            status=pb.NodeStatus(state=pb.NodeStatus.UNKNOWN, addr=addrs.ip, timestamp=time.time()),
            manager_status=pb.ManagerStatus(raft_addr=addrs.raft, api_addr=addrs.api),
            api_addr=addrs.api,
            raft_addr=addrs.raft,
        )

    def _found(
        self,
        addrs: Advertised,
        node: NodeState,
        creds: tls.NodeCredentials,
        objects: Callable[[bytes], Iterable[list[spb.StoreAction]]],
    ) -> None:
        """The one way a Raft gets its first member (init, restore,
        force-new-cluster): a fresh one-member Raft with a new secret (former
        managers can no longer talk to it), this node its leader, and
        `objects(secret)` written into it as ordinary replicated batches. Then
        the node is a member. On failure, nothing of the new Raft is left."""
        secret = secrets.token_bytes(32)
        self.files.reset_raft()
        self.files.new_raft_dir(secret)
        node.raft_peers = [addrs.raft]
        try:
            store = self.parts.start_manager(addrs, secret, [])
            if not store.wait_leader(LEADERSHIP_TIMEOUT):
                raise errors.Internal("the new Raft node did not become leader")
            for batch in objects(secret):
                # Objects as they were (recreate): a state that holds two
                # objects of one name from before names were checked at apply
                # time must not make the recovery fail with nothing left.
                store.propose(batch, timeout=SEED_WRITE_TIMEOUT, recreate=True)
        except BaseException:
            self.parts.shutdown(remove_containers=False)
            self.files.reset_raft()
            if self.node is None:  # init or restore: nothing of this attempt stays
                self.files.drop_data_key()
            raise
        self._activate(addrs, node, creds)

    def _activate(self, addrs: Advertised, node: NodeState, creds: tls.NodeCredentials) -> None:
        """The node is a member now: save it (last, see the module doc) and
        start its server and agent."""
        self.files.save_credentials(creds)
        self.files.save_node(node)
        self.node, self.creds, self.addrs = node, creds, addrs
        self.parts.start_services(addrs, node, creds)


def _issue_certificate(
    remote: str, ca_pem: bytes, request: ca_pb2.IssueNodeCertificateRequest
) -> ca_pb2.IssueNodeCertificateResponse:
    # Trusting only the root the token pins, and only a server holding a
    # manager's certificate (MANAGER_SAN): the token goes to a manager or
    # nowhere (issue 13).
    channel = grpc.secure_channel(remote, tls.channel_credentials(ca_pem), options=tls.MANAGER_CHANNEL_OPTIONS)
    try:
        resp: ca_pb2.IssueNodeCertificateResponse = ca_pb2_grpc.CAStub(channel).IssueNodeCertificate(
            request, timeout=ISSUE_TIMEOUT
        )
        return resp
    except grpc.RpcError as e:
        details = e.details() or ""
        if "Hostname Verification" in details or "No match found for server name" in details:
            raise tls.NotAManagerError(
                f"the server at {remote} is not a manager of this cluster (its certificate is not a manager's): "
                "the join token was not sent"
            ) from None
        prefix = f"cannot reach manager at {remote}: " if rpc.unreachable(e) else ""
        raise rpc.from_rpc_error(e, prefix) from None
    finally:
        channel.close()


def _joined_credentials(key_pem: bytes, resp: ca_pb2.IssueNodeCertificateResponse, pinned_pem: bytes) -> tls.NodeCredentials:
    """The credentials a join yields. The roots to trust are the manager's
    answer (two during a root rotation), which must include the root the
    token pins; the certificate must chain to them."""
    pinned = tls.ca_digest(pinned_pem)
    bundle = resp.ca_cert_pem or pinned_pem
    roots = [b"-----BEGIN CERTIFICATE-----" + part for part in bundle.split(b"-----BEGIN CERTIFICATE-----")[1:]]
    if pinned not in {tls.ca_digest(r) for r in roots}:
        raise tls.CAMismatchError("the manager answered with roots that do not include the one the join token pins")
    try:
        return tls.NodeCredentials.from_pems(key_pem, resp.cert_pem, bundle)
    except tls.CredentialsError as e:
        raise tls.JoinError(f"the manager issued an unusable certificate: {e}") from None


def _certificate_at_start(creds: tls.NodeCredentials) -> tuple[int, str]:
    return check_at_start(creds, time.time())


def _init_response(node_id: str, cluster: pb.Cluster, addrs: Advertised) -> cpb.InitResponse:
    return cpb.InitResponse(
        node_id=node_id,
        cluster_id=cluster.id,
        worker_token=cluster.worker_token,
        manager_token=cluster.manager_token,
        api_addr=addrs.join,
        unlock_key=cluster.unlock_key if cluster.spec.autolock else "",
    )
