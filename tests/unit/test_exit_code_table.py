"""README.md's "Exit codes" table lists every code the CLI can exit with, and no other.

The codes come from their two homes: the CLI's own (``cli/exit_codes.py``: usage, storage,
internal, interrupted, one per error) and the contract's verdict and guard tables.
"""

from __future__ import annotations

import re
from pathlib import Path

from preflight.cli import exit_codes
from preflight.contract import EXIT_CODES, GUARD_EXIT_CODES, STRICT_AT_RISK_EXIT

README = Path(__file__).resolve().parents[2] / "README.md"


def _documented_codes() -> set[int]:
    section = README.read_text(encoding="utf-8").split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    return {int(code) for code in re.findall(r"^\| (\d+) \|", section, flags=re.MULTILINE)}


def _codes_the_cli_can_exit_with() -> set[int]:
    own = {
        exit_codes.OK,
        exit_codes.INTERNAL,
        exit_codes.USAGE,
        exit_codes.STORAGE,
        exit_codes.GUARD_STOP,
        exit_codes.INTERRUPTED,
    }
    by_error = {code for _kind, code in exit_codes._BY_ERROR}
    return (
        own
        | by_error
        | set(EXIT_CODES.values())
        | set(GUARD_EXIT_CODES.values())
        | {STRICT_AT_RISK_EXIT}
    )


def test_the_readme_documents_exactly_the_codes_the_cli_exits_with() -> None:
    assert _documented_codes() == _codes_the_cli_can_exit_with()
