"""The ``preflight`` command line.

Exit codes (stable; see README): 0 go / success, 2 usage error, 3 storage error,
10 insufficient, 11 auth_failed, 12 billing_blocked, 13 unavailable, 14 at_risk
with --strict, 15 guard said stop, 130 interrupted, 1 internal error. Errors are one
line on stderr, never a traceback.
Each command's module is imported when that command runs (:data:`COMMANDS`, pip's
``commands_dict``), so ``--help`` imports none of them and each imports at its top.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Final, NamedTuple, NoReturn

import click

from preflight.cli.exit_codes import INTERNAL, INTERRUPTED, USAGE, exit_code_of
from preflight.errors import PreflightError
from preflight.secret import scrub


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"preflight: error: {scrub(message)}", err=True)
    sys.exit(code)


class Command(NamedTuple):
    """Where a command lives (``preflight.cli.MODULE``, its click command ``attribute``) and
    what ``preflight --help`` lists for it: its help's first sentence."""

    module: str
    attribute: str
    summary: str


#: Every command, in the order of a batch's life. tests/unit/test_cli_commands.py holds
#: each entry to the command it names.
COMMANDS: Final[Mapping[str, Command]] = {
    "check": Command(
        "batches", "check", "Snapshot the balance for BATCH_ID and answer go / no-go."
    ),
    "guard": Command(
        "batches", "guard", "Between two dispatches of BATCH_ID: continue, at_risk or stop."
    ),
    "record": Command(
        "batches",
        "record",
        "Record a job outcome of BATCH_ID (idempotent on batch, job and attempt).",
    ),
    "finish": Command(
        "batches",
        "finish",
        "Take a `finish` snapshot, mark BATCH_ID finished, and report foreign consumption.",
    ),
    "classify": Command(
        "batches",
        "classify_command",
        "Rerun the classifier over stored quota failures (idempotent).",
    ),
    "show": Command(
        "batches",
        "show",
        "Post-mortem of BATCH_ID: snapshots, outcome totals, tagged quota failures.",
    ),
    "failures": Command("batches", "failures", "Quota failures across batches, with their tags."),
    "batches": Command(
        "batches", "batches", "Recent batches with their verdicts and failure counts."
    ),
    "report": Command(
        "report",
        "report",
        "Write one self-contained HTML report of BATCH_ID, or of an --account.",
    ),
    "demo": Command(
        "admin",
        "demo",
        "Run the whole story against the bundled sandbox and print two post-mortems.",
    ),
    "profile": Command(
        "profile", "profile", "The vendor account profile (kept apart from batch work)."
    ),
    "db": Command("schema", "db", "Database schema (Alembic migrations)."),
    "simulate": Command(
        "admin",
        "simulate",
        "Run the sandbox vendor: a vendor's API with a real balance, faults and a control API.",
    ),
    "audit": Command(
        "audit",
        "audit",
        "Run one audit now, claiming the current period exactly as the worker does.",
    ),
    "worker": Command(
        "worker", "worker", "Run the audit on a schedule until SIGTERM / SIGINT (then exit 0)."
    ),
    "findings": Command(
        "audit",
        "findings",
        "What the audit found, oldest first: unexplained consumption, low balance, stale batches.",
    ),
    "serve": Command(
        "serve",
        "serve",
        "Serve the HTTP API: the same verbs as the CLI, over JSON, on the local database.",
    ),
    "token": Command(
        "tokens",
        "token",
        "Bearer tokens of the HTTP API (`preflight serve`): only their SHA-256 is stored.",
    ),
}


class _Commands(MutableMapping[str, click.Command]):
    """The group's commands: those of :data:`COMMANDS`, each imported on first look-up,
    and any added (``cli.add_command``), in that order."""

    def __init__(self, table: Mapping[str, Command]) -> None:
        self._table = table
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            entry = self._table[name]
            module = importlib.import_module(f"preflight.cli.{entry.module}")
            self._loaded[name] = getattr(module, entry.attribute)
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self._table, *self._loaded]))

    def __len__(self) -> int:
        return len(dict.fromkeys([*self._table, *self._loaded]))

    def listed(self, name: str) -> click.Command:
        """What ``--help`` lists for ``name``: the command if loaded, else a stand-in made of
        its summary (whose short help is the same, however wide the terminal)."""
        if name in self._loaded:
            return self._loaded[name]
        return click.Command(name, help=self._table[name].summary)


class _Group(click.Group):
    """Shows commands in the order of :data:`COMMANDS`, and lists them without importing."""

    commands: _Commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click.Group's, on the summaries: it would import every command to read its help.
        listed = [(name, self.commands.listed(name)) for name in self.list_commands(ctx)]
        shown = [(name, command) for name, command in listed if not command.hidden]
        if shown:
            limit = formatter.width - 6 - max(len(name) for name, _ in shown)
            with formatter.section("Commands"):
                formatter.write_dl([(n, c.get_short_help_str(limit)) for n, c in shown])


@click.group(
    cls=_Group,
    commands=_Commands(COMMANDS),
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="preflight")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Batch preflight and balance snapshots for paid API jobs.

    A check reads the vendor balance; it does not reserve it. preflight keeps the
    snapshots and outcomes that later tell why a job failed for quota.
    Settings come from PREFLIGHT_* variables and the TOML file in PREFLIGHT_CONFIG.
    """
    if ctx.invoked_subcommand not in _SERVING:
        # A one-shot command has no /metrics for anyone to scrape: it records nothing.
        from preflight import metrics  # cold path: `preflight --help` loads no decimal

        metrics.stop_recording()


#: The commands that stay up and serve the metrics they record.
_SERVING: Final = frozenset({"serve", "worker"})


# ---------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the CLI; map every failure to one line and a documented exit code."""
    try:
        code = cli.main(args=argv, prog_name="preflight", standalone_mode=False)
    except click.exceptions.Exit as exit_:
        sys.exit(exit_.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", INTERRUPTED)
    except click.UsageError as error:
        hint = f" (see `{error.ctx.command_path} --help`)" if error.ctx else ""
        _fail(f"{error.format_message()}{hint}", USAGE)
    except click.ClickException as error:
        _fail(error.format_message(), error.exit_code)
    except PreflightError as error:
        _fail(str(error), exit_code_of(error))
    except KeyboardInterrupt:
        _fail("interrupted", INTERRUPTED)
    except Exception as error:  # a bug: say so in one line, keep the traceback in the log
        _log_internal_error(error)
        _fail(
            f"internal error: {type(error).__name__}: {error} "
            "(run with PREFLIGHT_LOG_LEVEL=debug for details)",
            INTERNAL,
        )
    sys.exit(code if isinstance(code, int) else 0)


def _log_internal_error(error: Exception) -> None:
    # cold path: `preflight --help` loads no logging
    from preflight.logs import defer_logging, get_logger, logging_set_up

    if not logging_set_up():
        # A command that failed before reading its settings: without a set-up, this
        # debug event would go wherever the stdlib's defaults send it.
        defer_logging(
            os.environ.get("PREFLIGHT_LOG_LEVEL", "warning").strip().lower(),
            os.environ.get("PREFLIGHT_LOG_FORMAT", "auto").strip().lower(),
        )
    get_logger("preflight").debug("internal_error", exc_info=error)
