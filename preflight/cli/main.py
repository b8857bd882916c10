"""The ``preflight`` command line.

Exit codes (stable; see README): 0 go / success, 2 usage error, 3 storage error,
10 insufficient, 11 auth_failed, 12 billing_blocked, 13 unavailable, 14 at_risk
with --strict, 15 guard said stop, 130 interrupted, 1 internal error. Errors are one
line on stderr, never a traceback.
Heavy imports (SQLAlchemy, httpx) happen inside commands so ``--help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Final, NoReturn

import click

from preflight.cli import admin
from preflight.cli import audit as audit_commands
from preflight.cli import batches as batch_commands
from preflight.cli import profile as profile_commands
from preflight.cli import report as report_commands
from preflight.cli import serve as serve_command
from preflight.cli import tokens as token_commands
from preflight.cli.exit_codes import INTERNAL, INTERRUPTED, USAGE, exit_code_of
from preflight.errors import PreflightError
from preflight.secret import scrub


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"preflight: error: {scrub(message)}", err=True)
    sys.exit(code)


class _Group(click.Group):
    """Shows commands in the order they were defined (the order of a batch's life)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
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
        from preflight import metrics  # a command's, not --help's (it loads logging)

        metrics.stop_recording()


#: The commands that stay up and serve the metrics they record.
_SERVING: Final = frozenset({"serve", "worker"})


for _command in (
    batch_commands.check,
    batch_commands.guard,
    batch_commands.record,
    batch_commands.finish,
    batch_commands.classify_command,
    batch_commands.show,
    batch_commands.failures,
    batch_commands.batches,
    report_commands.report,
    admin.demo,
    profile_commands.profile,
    admin.db,
    admin.simulate,
    audit_commands.audit,
    audit_commands.worker,
    audit_commands.findings,
    serve_command.serve,
    token_commands.token,
):
    cli.add_command(_command)


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

    from preflight.logs import defer_logging, get_logger, logging_set_up

    if not logging_set_up():
        # A command that failed before reading its settings: without a set-up, this
        # debug event would go wherever the stdlib's defaults send it.
        defer_logging(
            os.environ.get("PREFLIGHT_LOG_LEVEL", "warning").strip().lower(),
            os.environ.get("PREFLIGHT_LOG_FORMAT", "auto").strip().lower(),
        )
    get_logger("preflight").debug("internal_error", exc_info=error)
