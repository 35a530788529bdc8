"""Shared flags: groups added to commands by @flags, declared once."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import pytest
import typer
from typer.testing import CliRunner

from swarmlet.cli.main import load_command
from swarmlet.cli.options import WaitFlags, flags, given
from swarmlet.cli.service_flags import UpdatePolicy

runner = CliRunner()


@dataclasses.dataclass(frozen=True)
class Pair:
    left: Annotated[int | None, typer.Option("--left", help="Left.")] = None
    right: Annotated[bool, typer.Option("--right", help="Right.")] = False


def test_a_group_reaches_the_command_as_one_instance() -> None:
    seen: list[tuple[str, Pair, WaitFlags]] = []
    tiny = typer.Typer()

    @tiny.command()
    @flags(pair=Pair, wait=WaitFlags)
    def cmd(name: Annotated[str, typer.Argument()], pair: Pair, wait: WaitFlags) -> None:
        seen.append((name, pair, wait))

    result = runner.invoke(tiny, ["x", "--left", "3", "-d", "--timeout", "5s"])
    assert result.exit_code == 0, result.output
    assert seen == [("x", Pair(left=3), WaitFlags(detach=True, timeout="5s"))]
    assert seen[0][2].limit() == 5.0
    help_text = runner.invoke(tiny, ["--help"]).output
    # The command's own parameters first, then the groups in the order given.
    assert help_text.index("--left") < help_text.index("--right") < help_text.index("--detach")


def test_a_group_needs_its_parameter() -> None:
    with pytest.raises(TypeError, match="no parameter 'pair'"):
        flags(pair=Pair)(lambda other: None)


def test_given_counts_zero_as_given() -> None:
    assert not given(UpdatePolicy())
    assert given(UpdatePolicy(parallelism=0))
    assert given(UpdatePolicy(auto_promote=False))


def _params(*path: str) -> dict[str, Any]:
    """A command's click parameters by option name."""
    cmd: Any = load_command(path[0])  # the root loads its commands lazily
    for name in path[1:]:
        cmd = cmd.commands[name]
    return {opt: p for p in cmd.params for opt in p.opts}


def test_create_and_update_share_one_declaration_of_the_policy_flags() -> None:
    create, update = _params("service", "create"), _params("service", "update")
    shared = [
        f for f in create if f.startswith(("--update-", "--rollback-", "--reserve-", "--limit-", "--restart-", "--health-"))
    ]
    assert len(shared) == 14 + 4 + 4 + 5 + 2  # + --limit-pids, --health-start-interval (issue 11)
    for flag in shared:
        a, b = create[flag], update[flag]
        assert (a.opts, a.help, a.metavar) == (b.opts, b.help, b.metavar), flag
    for flag in ("--detach", "--quiet", "--stop-grace-period", "--no-healthcheck"):
        assert create[flag].opts == update[flag].opts


def test_ps_commands_share_their_listing_flags() -> None:
    service_ps, node_ps = _params("service", "ps"), _params("node", "ps")
    for flag in ("--filter", "-f", "--no-trunc", "--quiet", "-q", "--format"):
        assert service_ps[flag].opts == node_ps[flag].opts
