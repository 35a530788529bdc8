"""The executor's view of engine events: a stream kept open, and a listing
each time it (re)opens.

The listing comes after the stream is open, so whatever changes after the
listing arrives as an event and no exit can fall in between. The first
listing waits for `ready` (the first assignment): before it, the agent cannot
tell its tasks' containers from orphans.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping

from swarmlet.agent.runtime.interface import WATCHED_ACTIONS, ContainerRuntime, Event, EventStream

log = logging.getLogger(__name__)

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 2.0


class EventWatcher:
    def __init__(
        self,
        runtime: ContainerRuntime,
        labels: Mapping[str, str],
        on_open: Callable[[], None],
        on_event: Callable[[Event], None],
        ready: threading.Event,
        stopped: threading.Event,
    ) -> None:
        self._runtime = runtime
        self._labels = dict(labels)
        self._on_open = on_open
        self._on_event = on_event
        self._ready = ready
        self._stopped = stopped
        self.stream: EventStream | None = None  # the open stream, for close()

    def close(self) -> None:
        """Ends the current stream (run() reconnects unless stopped)."""
        stream = self.stream
        if stream is not None:
            with contextlib.suppress(Exception):  # already closed / engine gone
                stream.close()

    def run(self) -> None:
        backoff = BACKOFF_FIRST
        while not self._stopped.is_set():
            try:
                stream = self._runtime.events(self._labels, WATCHED_ACTIONS)
            except Exception as e:
                # Once per outage (the backoff resets on success), not every retry.
                (log.warning if backoff == BACKOFF_FIRST else log.debug)("engine events: %s; retrying", e)
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            self.stream = stream
            if self._stopped.is_set():
                self.close()
                return
            try:
                while not self._ready.wait(0.5):
                    pass
                if self._stopped.is_set():
                    return
                self._on_open()
                backoff = BACKOFF_FIRST
                for ev in stream:
                    self._on_event(ev)
            except Exception as e:
                if not self._stopped.is_set():
                    log.warning("engine events stream broke: %s", e)
            finally:
                self.close()
            if not self._stopped.is_set():
                log.info("engine events stream ended; reconnecting")
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
