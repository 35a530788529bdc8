"""Service logs: the manager fans out to the agents of the nodes that ran the
service's tasks (over their mutual-TLS API) and merges the lines."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import grpc

from swarmlet.api import agent_pb2, agent_pb2_grpc
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import lookup
from swarmlet.manager.control.base import StoreAccess


class LogControl:
    def __init__(self, access: StoreAccess, agent_channel: Callable[[str], grpc.Channel]) -> None:
        self._a = access
        # agent_channel(addr) -> an mTLS channel to another node's API port.
        self._agent_channel = agent_channel

    def service_logs(self, req: cpb.ServiceLogsRequest, context: grpc.ServicerContext) -> Iterator[cpb.ServiceLogLine]:
        snap = self._a.snap()
        svc = lookup.service(snap, req.ref)
        by_node: dict[str, list[pb.Task]] = {}
        for t in snap.tasks.values():
            if t.service_id == svc.id and t.node_id and t.status.container_id:
                by_node.setdefault(t.node_id, []).append(t)
        out: queue.Queue[cpb.ServiceLogLine | None] = queue.Queue(maxsize=1000)

        def pump(node: pb.Node, tasks: list[pb.Task]) -> None:
            info = {t.status.container_id: t for t in tasks}
            try:
                if not node.api_addr:
                    raise RuntimeError("node has no API address yet")
                stub = agent_pb2_grpc.AgentStub(self._agent_channel(node.api_addr))
                stream = stub.TaskLogs(
                    agent_pb2.TaskLogsRequest(
                        container_ids=list(info), follow=req.follow, tail=req.tail, timestamps=req.timestamps
                    ),
                    timeout=None if req.follow else 30,
                )
                context.add_callback(stream.cancel)
                for line in stream:
                    t = info.get(line.container_id)
                    out.put(
                        cpb.ServiceLogLine(
                            task_id=line.task_id or (t.id if t else ""),
                            node_id=node.id,
                            node_name=node.description.hostname,
                            slot=t.slot if t else 0,
                            stream=line.stream,
                            data=line.data,
                        )
                    )
            except Exception as e:  # one node's failure is a line in the output, not the end of it
                if context.is_active():
                    detail = e.details() if isinstance(e, grpc.RpcError) else e
                    msg = f"error from node {lookup.node_name(node)}: {detail}\n"
                    out.put(
                        cpb.ServiceLogLine(
                            node_id=node.id, node_name=node.description.hostname, stream="stderr", data=msg.encode()
                        )
                    )
            finally:
                out.put(None)

        threads = []
        for nid, tasks in by_node.items():
            node = snap.nodes.get(nid)
            if node is None:
                continue
            th = threading.Thread(target=pump, args=(node, tasks), daemon=True, name="logs-pump")
            th.start()
            threads.append(th)
        remaining = len(threads)
        while remaining and context.is_active():
            try:
                item = out.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is None:
                remaining -= 1
            else:
                yield item
