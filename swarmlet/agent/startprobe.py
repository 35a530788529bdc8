"""--health-start-interval on engines that predate it (Docker Engine 20.10
speaks API 1.41; the option arrived with API 1.44): during the start period
the agent runs the container's health test itself, every start interval,
and the first success counts as healthy, so the task is RUNNING as soon as
it is ready instead of after the engine's first check at --health-interval.
The engine's own checks then go on at their interval (a later failure makes
the container unhealthy as usual).

One short-lived thread per probing container; each ends at the first
success, when the start period is over, or when its container is gone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from swarmlet import errors
from swarmlet.agent.runtime.interface import ContainerRuntime
from swarmlet.api import objects_pb2 as pb

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0  # docker's default health check timeout


def exec_command(test: Sequence[str]) -> list[str] | None:
    """Docker's health test as a command to exec: CMD-SHELL runs through
    /bin/sh -c, CMD as given; None when there is nothing to run."""
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    if test[0] == "CMD":
        return list(test[1:]) or None
    return ["/bin/sh", "-c", " ".join(test)]


def wanted(hc: pb.HealthConfig) -> bool:
    """The spec asks for faster checks while the container starts."""
    return hc.start_interval > 0 and hc.start_period > 0


@dataclass
class _Probe:
    stop: threading.Event
    thread: threading.Thread


class StartProbes:
    def __init__(self, runtime: ContainerRuntime, on_pass: Callable[[str], None]) -> None:
        self._runtime = runtime
        self._on_pass = on_pass
        self._lock = threading.Lock()
        self._probes: dict[str, _Probe] = {}
        self._passed: set[str] = set()

    def passed(self, task_id: str) -> bool:
        with self._lock:
            return task_id in self._passed

    def ensure(self, task_id: str, container_id: str, test: Sequence[str], hc: pb.HealthConfig) -> None:
        """Probe `container_id` (started now) unless it is probed already or passed."""
        cmd = exec_command(test)
        if cmd is None or not wanted(hc):
            return
        with self._lock:
            if task_id in self._probes or task_id in self._passed:
                return
            stop = threading.Event()
            t = threading.Thread(
                target=self._run,
                args=(task_id, container_id, cmd, hc.start_interval, hc.start_period, hc.timeout or DEFAULT_TIMEOUT, stop),
                name=f"start-probe-{task_id[:8]}",
                daemon=True,
            )
            self._probes[task_id] = _Probe(stop, t)
        t.start()

    def forget(self, task_id: str) -> None:
        """The task's container stopped or went."""
        with self._lock:
            p = self._probes.pop(task_id, None)
            self._passed.discard(task_id)
        if p is not None:
            p.stop.set()

    def stop(self) -> None:
        with self._lock:
            probes = list(self._probes.values())
            self._probes.clear()
        for p in probes:
            p.stop.set()

    def _run(
        self, task_id: str, cid: str, cmd: list[str], interval: float, period: float, timeout: float, stop: threading.Event
    ) -> None:
        end = time.monotonic() + period
        ok = False
        while not stop.is_set() and time.monotonic() < end:
            try:
                ok = self._runtime.exec(cid, cmd, timeout) == 0
            except errors.NotFound:
                break  # the container went
            except errors.SwarmletError as e:
                log.debug("start probe of %s: %s", task_id, e)
            if ok:
                break
            stop.wait(interval)
        with self._lock:
            if self._probes.get(task_id, None) is not None and self._probes[task_id].stop is stop:
                del self._probes[task_id]
                if ok:
                    self._passed.add(task_id)
        if ok and not stop.is_set():
            self._on_pass(task_id)
