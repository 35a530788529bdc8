"""The root command loads the nouns lazily (issue 15: start-up time): its
table of commands must say what the commands themselves say, and `--help`
must not import them (nor grpc)."""

from __future__ import annotations

import subprocess
import sys

from swarmlet.cli import main


def test_the_table_names_every_command_with_its_own_help() -> None:
    for name, (_, short) in main.COMMANDS.items():
        cmd = main.load_command(name)
        assert cmd.get_short_help_str(limit=200) == short, name


def test_help_imports_no_command_module_and_no_grpc() -> None:
    code = (
        "import sys\n"
        "from swarmlet.cli.main import app\n"
        "try:\n"
        "    app(['--help'], prog_name='swarmlet')\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = sorted(m for m in sys.modules if m == 'grpc' or m.startswith('swarmlet.cli.') or m.startswith('swarmlet.api'))\n"
        "print('LOADED', loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "LOADED ['swarmlet.cli.coercion', 'swarmlet.cli.host', 'swarmlet.cli.main']" in out, out
    assert "node" in out and "Manage swarm services." in out
