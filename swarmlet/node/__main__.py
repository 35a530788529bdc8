"""`python -m swarmlet.node`: the daemon's own process.

`swarmlet daemon` checks its flags with the CLI, then replaces itself (same
pid) with this lean entry, which reads the checked configuration from the
environment: the daemon then carries none of the CLI's libraries (typer and
the pydantic it uses; issue 15, worker memory). Its arguments are the
original command line's, kept only so that the process stays recognisable
(ps, supervisors).
"""

from __future__ import annotations

import json
import os
import sys

from swarmlet.node.config import DaemonConfig
from swarmlet.node.daemon import run_daemon

CONFIG_ENV = "SWARMLET_DAEMON_CONFIG"  # set by cli/daemon.py


def main() -> int:
    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        sys.stderr.write("swarmlet.node: start the daemon with `swarmlet daemon`\n")
        return 2
    return run_daemon(DaemonConfig(**json.loads(raw)))


if __name__ == "__main__":
    sys.exit(main())
