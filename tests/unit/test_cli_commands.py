"""The CLI's command table (preflight.cli.main.COMMANDS, pip's ``commands_dict``): each
entry is the command it names, and ``preflight --help`` lists them without importing one."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click
import pytest

from preflight.cli.main import COMMANDS, cli


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_entry_is_its_command_and_its_summary_is_the_commands_help(name: str) -> None:
    entry = COMMANDS[name]
    command = getattr(importlib.import_module(f"preflight.cli.{entry.module}"), entry.attribute)
    assert isinstance(command, click.Command)
    assert command.name == name
    assert not command.hidden
    # However wide the terminal, `--help` shows for the summary what it shows for the help.
    listed = click.Command(name, help=entry.summary)
    for limit in range(3, 120):
        assert listed.get_short_help_str(limit) == command.get_short_help_str(limit)


def test_help_lists_the_table_as_it_would_list_the_loaded_commands() -> None:
    program = (
        "import sys\n"
        "from preflight.cli.main import COMMANDS, cli\n"
        "def show():\n"
        "    cli.main(['--help'], prog_name='preflight', standalone_mode=False)\n"
        "show()\n"
        "print(sorted(m for m in sys.modules if m.startswith('preflight.cli.')), file=sys.stderr)\n"
        "print('----')\n"
        "for name in COMMANDS:\n"
        "    cli.commands[name]\n"
        # Now click's own listing, of the loaded commands.
        "import click\n"
        "cli.format_commands = lambda c, f: click.Group.format_commands(cli, c, f)\n"
        "show()\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert run.stderr.strip() == "['preflight.cli.exit_codes', 'preflight.cli.main']"
    cold, warm = run.stdout.split("----\n")
    assert "  check     Snapshot the balance for BATCH_ID and answer go / no-go.\n" in cold
    assert cold == warm
    assert cli.list_commands(click.Context(cli)) == list(COMMANDS)
