"""Split the integration test modules into N shards of about equal run time.

Each shard runs in its own pytest process on its own testbed (prefix and
underlay subnet of its own: see scripts/test.sh), so shards never share a
namespace, a bridge or an engine. Modules stay whole: a module's fixtures
bring one testbed up for all its tests.

Usage: python scripts/integration_shards.py N   -> N lines, each the module
paths of one shard (space-separated). Standard library only.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Seconds per module on this kind of machine (2 cores), partly measured and
# partly tuned: only a guide for balancing (a module missing here counts as
# DEFAULT). scripts/test.sh prints each run's module seconds. Mind the order
# too: with the figures of one run taken as they were, test_ha came first in
# its shard, started beside the other shard's first testbed, and its
# three-manager cluster did not settle with h1 leading within 60 s; these
# figures keep the order of the last run that passed.
MEASURED = {
    "test_images.py": 320,
    "test_update.py": 150,
    "test_chaos.py": 130,
    "test_pki.py": 115,
    "test_cluster.py": 110,
    "test_faults.py": 65,
    "test_ha.py": 100,
    "test_security.py": 65,
    "test_service_options.py": 65,
    "test_powercut.py": 40,
    "test_observe.py": 50,
    "test_storage.py": 40,
    "test_stack.py": 30,
    "test_overlay.py": 20,
    "test_executor.py": 27,
    "test_testbed.py": 5,
    # Not measured alone yet: guessed from the shards' totals of one run.
    "test_engine_api.py": 300,
    "test_scale.py": 150,
}
DEFAULT = 60


def shards(modules: list[Path], n: int) -> list[list[Path]]:
    """Longest first, each into the shard with the least time so far."""
    out: list[list[Path]] = [[] for _ in range(n)]
    load = [0] * n
    for m in sorted(modules, key=lambda p: (-MEASURED.get(p.name, DEFAULT), p.name)):
        i = load.index(min(load))
        out[i].append(m)
        load[i] += MEASURED.get(m.name, DEFAULT)
    return out


def module_seconds(xml_paths: list[str]) -> dict[str, float]:
    """Seconds per test module in pytest's JUnit XML files (each test case's
    time includes its fixtures' setup and teardown): the figures to keep the
    table above current."""
    import xml.etree.ElementTree as ET

    out: dict[str, float] = {}
    for path in xml_paths:
        for case in ET.parse(path).iter("testcase"):
            module = case.get("classname", "").split(".")[-1] + ".py"
            out[module] = out.get(module, 0.0) + float(case.get("time", 0))
    return out


def main(argv: list[str]) -> int:
    if len(argv) > 2 and argv[1] == "--report":
        for module, secs in sorted(module_seconds(argv[2:]).items(), key=lambda kv: -kv[1]):
            print(f"  {module}: {secs:.0f} s")
        return 0
    if len(argv) != 2 or not argv[1].isdigit() or int(argv[1]) < 1:
        print("usage: integration_shards.py N (N >= 1)", file=sys.stderr)
        return 2
    root = Path(__file__).resolve().parent.parent
    modules = sorted((root / "tests" / "integration").glob("test_*.py"))
    for shard in shards([m.relative_to(root) for m in modules], int(argv[1])):
        print(" ".join(str(m) for m in shard))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
