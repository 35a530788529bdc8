"""Promotion and demotion of this node, as the cluster asks for them.

The agent's session learns that the cluster wants this node in another role.
We then ask a manager for a certificate of that role (Dispatcher.RenewRole,
which also changes the Raft membership), save the new identity on disk, and
replace the process with a fresh daemon that resumes from it: exactly the
path a restart after a crash takes (tested), and the executor adopts the
running containers. Rebuilding the gRPC server, Raft node and loops in place
proved fragile (a Raft node re-created on the same port in the same process
never caught up).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Protocol

import grpc

from swarmlet import tls
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import dispatcher_pb2_grpc
from swarmlet.api import objects_pb2 as pb
from swarmlet.node.membership import Membership

log = logging.getLogger(__name__)

# How long to keep asking the managers for the new certificate.
RENEW_DEADLINE = 120.0
RENEW_TIMEOUT = 30.0
RENEW_RETRY = 0.5


class RoleParts(Protocol):
    """What a role change needs from the running parts (daemon.Daemon)."""

    def manager_channel(self, addr: str) -> grpc.Channel: ...

    def stop_session(self) -> None: ...

    def restart_session(self) -> None: ...

    def close_store(self) -> None: ...


class RoleChanger:
    def __init__(self, membership: Membership, parts: RoleParts, stopped: threading.Event) -> None:
        self._membership = membership
        self._parts = parts
        self._stopped = stopped
        self._busy = threading.Lock()

    def wanted(self, desired_role: int) -> None:
        """The session's on_role callback. The change runs on its own thread:
        it stops the session that calls this. A change already under way is
        not started twice (a reconnecting session may ask again)."""
        if not self._busy.acquire(blocking=False):
            return
        threading.Thread(target=self._change, args=(desired_role,), name="role-change", daemon=True).start()

    def _change(self, desired_role: int) -> None:
        try:
            self._change_role(desired_role)
        finally:
            self._busy.release()

    def _change_role(self, desired_role: int) -> None:
        want = "manager" if desired_role == pb.NodeSpec.MANAGER else "worker"
        key_pem = tls.new_node_key()
        resp = self._renew(tls.make_csr(key_pem))
        if resp is None:
            log.error("could not change role to %s: no manager answered", want)
            self._parts.restart_session()
            return
        log.info("role changing to %s: saving the new identity and restarting the daemon process", resp.role)
        with self._membership.lock:
            if self._adopt(resp, key_pem):
                reexec()

    def _renew(self, csr_pem: bytes) -> dpb.RenewRoleResponse | None:
        """Ask each known manager in turn until one answers or the deadline passes."""
        deadline = time.monotonic() + RENEW_DEADLINE
        while time.monotonic() < deadline and not self._stopped.is_set():
            node = self._membership.node
            for addr in list(node.managers if node else []):
                channel = self._parts.manager_channel(addr)
                try:
                    resp: dpb.RenewRoleResponse = dispatcher_pb2_grpc.DispatcherStub(channel).RenewRole(
                        dpb.RenewRoleRequest(csr_pem=csr_pem), timeout=RENEW_TIMEOUT
                    )
                    return resp
                except grpc.RpcError as e:
                    log.info("role renewal via %s: %s", addr, e.details())
                finally:
                    channel.close()
            self._stopped.wait(RENEW_RETRY)
        return None

    def _adopt(self, resp: dpb.RenewRoleResponse, key_pem: bytes) -> bool:
        """Make the state on disk describe the new role (caller holds the
        membership lock). False if the node left the cluster meanwhile."""
        m = self._membership
        node, old = m.node, m.creds
        if node is None or old is None:
            return False
        ident = tls.certificate_identity(resp.cert_pem)
        creds = tls.NodeCredentials(
            key_pem=key_pem,
            cert_pem=resp.cert_pem,
            ca_pem=old.ca_pem,
            node_id=node.node_id,
            role=resp.role,
            cluster_id=ident.cluster_id,
        )
        self._parts.stop_session()
        if resp.role == "worker":
            self._parts.close_store()
            # Removed from Raft: its old log must never be replayed.
            m.files.reset_raft()
            # A worker keeps no data key (it would stay locked under autolock):
            # its TLS key is saved in the clear below, as every worker's.
            m.files.drop_data_key()
            node.raft_peers = []
        elif resp.role == "manager":
            m.files.reset_raft()
            m.files.new_raft_dir(resp.raft_secret)
            node.raft_peers = list(resp.raft_peers)
        node.role = resp.role
        m.files.save_credentials(creds)
        m.files.save_node(node)
        m.creds = creds  # a certificate renewal racing with this one must not overwrite it (node/certs.py)
        return True


def reexec() -> None:
    """Replace this process with a fresh daemon with the same arguments (same
    pid: supervisors and the testbed keep tracking it)."""
    for h in logging.getLogger().handlers:
        h.flush()
    # The interpreter's own command line (`-m swarmlet.node ...` for a daemon
    # started by `swarmlet daemon`), with the same environment.
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
