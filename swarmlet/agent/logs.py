"""Task logs from this node's containers, for the Agent API's TaskLogs.

Each container's output is read by its own thread (a followed stream blocks
while the container is quiet) into one bounded queue, so the lines of several
containers interleave as they arrive. Closing the iterator closes the engine
streams, which ends those threads.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from swarmlet.agent.runtime import containers as cm
from swarmlet.agent.runtime.interface import ContainerRuntime, LogStream
from swarmlet.api import agent_pb2

log = logging.getLogger(__name__)

_QUEUE_SIZE = 1024
_PUT_POLL = 0.5  # how often a blocked reader checks whether the consumer left


@dataclass
class _Source:
    container_id: str
    task_id: str
    stream: LogStream | None = None


def task_logs(
    runtime: ContainerRuntime,
    node_id: str,
    container_ids: list[str],
    follow: bool,
    tail: int,
    timestamps: bool,
    since: float = 0.0,
    until: float = 0.0,
) -> Iterator[agent_pb2.LogLine]:
    """Log lines of this node's containers, stdout and stderr told apart.
    Unknown containers, containers of other nodes and TTY containers (their
    output is not multiplexed) are skipped."""
    sources: list[_Source] = []
    for cid in container_ids:
        c = runtime.inspect(cid)
        if c is None or c.labels.get(cm.LABEL_NODE_ID) != node_id:
            log.info("logs: container %s is not one of this node's", cid)
            continue
        if c.tty:
            log.info("logs: container %s has a TTY; not supported", cid)
            continue
        sources.append(_Source(container_id=c.id, task_id=c.labels.get(cm.LABEL_TASK_ID, "")))
    if not sources:
        return
    out: queue.Queue[agent_pb2.LogLine | _Source] = queue.Queue(maxsize=_QUEUE_SIZE)
    cancel = threading.Event()

    def put(item: agent_pb2.LogLine | _Source) -> bool:
        """False once the consumer is gone."""
        while not cancel.is_set():
            try:
                out.put(item, timeout=_PUT_POLL)
                return True
            except queue.Full:
                continue
        return False

    def pump(s: _Source) -> None:
        try:
            s.stream = runtime.logs(s.container_id, follow, tail, timestamps, since=since, until=until)
            if cancel.is_set():
                return
            for chunk in s.stream:
                line = agent_pb2.LogLine(
                    container_id=s.container_id, task_id=s.task_id, node_id=node_id, stream=chunk.stream, data=chunk.data
                )
                if cancel.is_set() or not put(line):
                    return
        except Exception as e:
            if not cancel.is_set():
                log.warning("logs of %s: %s", s.container_id[:12], e)
        finally:
            if s.stream is not None:
                s.stream.close()
            put(s)  # end marker, unless the consumer is gone

    for s in sources:
        threading.Thread(target=pump, args=(s,), daemon=True, name="exec-logs").start()
    remaining = len(sources)
    try:
        while remaining:
            item = out.get()
            if isinstance(item, _Source):
                remaining -= 1
                continue
            yield item
    finally:
        cancel.set()
        for s in sources:
            if s.stream is not None:
                with contextlib.suppress(Exception):
                    s.stream.close()
        # Unblock readers waiting on a full queue.
        with contextlib.suppress(queue.Empty):
            while True:
                out.get_nowait()
