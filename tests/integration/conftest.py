"""Fixtures for tests that need real engines: the multi-host testbed.

Every test under tests/integration is marked `integration`. Both fixtures
skip (with the reason) where the testbed cannot run: not root, or dockerd and
friends not installed (scripts/install.sh installs them).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parents[1] / "scripts"))

import testbed as testbed_lib  # noqa: E402  (scripts/testbed.py, needs the path above)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items: mark only those under this directory.
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


def _skip_if_unsupported() -> None:
    reason = testbed_lib.missing_prerequisites()
    if reason:
        pytest.skip(f"testbed unavailable: {reason}")


# Several checkouts may run their suites at once on one machine (parallel
# work in git worktrees): each picks its own prefix and underlay subnet.
PREFIX = os.environ.get("SWARMLET_TESTBED_PREFIX", "sl")
SUBNET = int(os.environ.get("SWARMLET_TESTBED_SUBNET", "0"))


@pytest.fixture(scope="module")
def testbed() -> Iterator[testbed_lib.Testbed]:
    """4 hosts (h1..h4, 198.18.SUBNET.1-4) each with dockerd and a swarmlet
    daemon. Per test module: bringing one up takes ~1.5 s, and a fresh one
    keeps modules from depending on each other's cluster state."""
    _skip_if_unsupported()
    bed = testbed_lib.Testbed(prefix=PREFIX, subnet_index=SUBNET)
    try:
        bed.up(4, swarmlet=True)
        yield bed
    finally:
        bed.down()


@pytest.fixture(scope="session")
def engine() -> Iterator[docker.DockerClient]:
    """A lone Docker engine (its own 1-host testbed, no swarmlet) with the test image loaded."""
    _skip_if_unsupported()
    bed = testbed_lib.Testbed(prefix=PREFIX + "x", subnet_index=SUBNET + 100)
    try:
        (host,) = bed.up(1, swarmlet=False)
        yield bed.docker(host)
    finally:
        bed.down()
