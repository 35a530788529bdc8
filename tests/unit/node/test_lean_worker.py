"""A worker's daemon loads nothing of the manager's Raft store (issue 15:
worker memory): pysyncobj and the store come in only when the node starts as
a manager (Daemon.start_manager)."""

from __future__ import annotations

import subprocess
import sys


def test_the_daemon_module_loads_no_raft_store() -> None:
    code = (
        "import sys\n"
        "import swarmlet.node.daemon\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pysyncobj' or m == 'swarmlet.manager.store'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
