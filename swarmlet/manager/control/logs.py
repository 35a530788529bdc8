"""Service logs: the manager streams each task's container output from the
agent of the task's node (over its mutual-TLS API) and merges the lines.

One stream per task. With --follow the manager keeps watching the store and
opens a stream for every task of the service that gets a container after the
command began (a replacement, a scale-up), from that container's first line:
a replaced task's logs continue in the same output (issue 16).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import grpc

from swarmlet.api import agent_pb2, agent_pb2_grpc
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import lookup
from swarmlet.core import state as st
from swarmlet.manager.control.base import StoreAccess
from swarmlet.manager.store import Store

# How often a follow looks for new tasks when the store is quiet.
WATCH_PERIOD = 1.0
_QUEUE = 1000


def details(task: pb.Task) -> str:
    """What --details adds to a line: the task's identity, as docker's
    com.docker.swarm.* attributes."""
    return f"swarmlet.node.id={task.node_id},swarmlet.service.id={task.service_id},swarmlet.task.id={task.id}"


class LogControl:
    def __init__(self, access: StoreAccess, agent_channel: Callable[[str], grpc.Channel]) -> None:
        self._a = access
        # agent_channel(addr) -> an mTLS channel to another node's API port.
        self._agent_channel = agent_channel

    def service_logs(self, req: cpb.ServiceLogsRequest, context: grpc.ServicerContext) -> Iterator[cpb.ServiceLogLine]:
        snap = self._a.snap()
        svc, only = lookup.service_or_task(snap, req.ref)
        out: queue.Queue[cpb.ServiceLogLine | None] = queue.Queue(maxsize=_QUEUE)
        streams = _Streams(self, self._a.store, req, svc, only, out, context)
        streams.open_new(snap, first=True)
        if req.follow:
            threading.Thread(target=streams.watch, args=(snap.version,), daemon=True, name="logs-watch").start()
        while context.is_active():
            if not req.follow and streams.running == 0:
                return
            try:
                item = out.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is None:
                streams.ended()
            else:
                yield item

    def pump(
        self,
        req: cpb.ServiceLogsRequest,
        node: pb.Node,
        task: pb.Task,
        tail: int,
        out: queue.Queue[cpb.ServiceLogLine | None],
        context: grpc.ServicerContext,
    ) -> None:
        """One task's lines into `out`, then None (its end)."""
        head = cpb.ServiceLogLine(
            task_id=task.id,
            node_id=node.id,
            node_name=node.description.hostname,
            slot=task.slot,
            service_name=task.service_name,
            details=details(task) if req.details else "",
        )
        try:
            if not node.api_addr:
                raise RuntimeError("node has no API address yet")
            stub = agent_pb2_grpc.AgentStub(self._agent_channel(node.api_addr))
            stream = stub.TaskLogs(
                agent_pb2.TaskLogsRequest(
                    container_ids=[task.status.container_id],
                    follow=req.follow,
                    tail=tail,
                    timestamps=req.timestamps,
                    since=req.since,
                    until=req.until,
                ),
                timeout=None if req.follow else 30,
            )
            context.add_callback(stream.cancel)
            for line in stream:
                msg = cpb.ServiceLogLine()
                msg.CopyFrom(head)
                msg.stream, msg.data = line.stream, line.data
                out.put(msg)
        except Exception as e:  # one node's failure is a line in the output, not the end of it
            if context.is_active():
                detail = e.details() if isinstance(e, grpc.RpcError) else e
                msg = cpb.ServiceLogLine()
                msg.CopyFrom(head)
                msg.stream, msg.data = "stderr", f"error from node {lookup.node_name(node)}: {detail}\n".encode()
                out.put(msg)
        finally:
            out.put(None)


class _Streams:
    """The tasks whose output is being streamed, and the search for new ones."""

    def __init__(
        self,
        control: LogControl,
        store: Store,
        req: cpb.ServiceLogsRequest,
        svc: pb.Service,
        only: pb.Task | None,
        out: queue.Queue[cpb.ServiceLogLine | None],
        context: grpc.ServicerContext,
    ) -> None:
        self._control = control
        self._store = store
        self._req = req
        self._svc = svc
        self._only = only
        self._out = out
        self._context = context
        self._seen: set[str] = set()  # task ids with a stream (or none to open)
        self._lock = threading.Lock()
        self._running = 0  # streams not ended yet (their ends arrive on `out`)

    @property
    def running(self) -> int:
        with self._lock:
            return self._running

    def ended(self) -> None:
        with self._lock:
            self._running -= 1

    def _wanted(self, t: pb.Task) -> bool:
        if self._only is not None:
            return t.id == self._only.id
        return t.service_id == self._svc.id

    def open_new(self, snap: st.Snapshot, first: bool) -> None:
        """Open a stream for each task of interest that has a container and no
        stream yet. Tasks found after the start get their whole output."""
        todo: list[tuple[pb.Node, pb.Task]] = []
        with self._lock:
            for t in sorted(snap.tasks.values(), key=lambda t: (t.slot, t.meta.created_at, t.id)):
                if t.id in self._seen or not self._wanted(t) or not t.node_id or not t.status.container_id:
                    continue
                node = snap.nodes.get(t.node_id)
                if node is None:
                    continue
                self._seen.add(t.id)
                todo.append((node, t))
            self._running += len(todo)
        tail = self._req.tail if first else -1
        for node, t in todo:
            threading.Thread(
                target=self._control.pump,
                args=(self._req, node, t, tail, self._out, self._context),
                daemon=True,
                name="logs-pump",
            ).start()

    def watch(self, version: int) -> None:
        """While the client follows: new tasks of the service get a stream."""
        store = self._store
        while self._context.is_active():
            version = store.wait_for_change(version, timeout=WATCH_PERIOD)
            if self._svc.id not in store.snapshot().services and self._only is None:
                continue  # removed: nothing new will come, the open streams end by themselves
            self.open_new(store.snapshot(), first=False)
