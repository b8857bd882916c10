from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import structlog

from preflight.logs import configure_logging, defer_logging, get_logger
from preflight.secret import Secret

TOKEN = "tok-logs-9f8e7d6c5b4a"
# As in the product: the Secret exists (settings were loaded) before anything logs.
SECRET = Secret(TOKEN)


def _fail_with_token_in_a_local() -> None:
    token = SECRET.reveal()
    raise RuntimeError(f"request failed for Bearer {token}")


def test_json_logs_scrub_token_from_events_and_tracebacks() -> None:
    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    log = structlog.get_logger("preflight").bind(batch_id="b-1")
    log.info("check_completed", header=f"Bearer {TOKEN}", nested={"list": [TOKEN]})
    try:
        _fail_with_token_in_a_local()
    except RuntimeError:
        log.exception("check_failed")
    logging.getLogger("httpx").debug("sending Authorization: Bearer %s", TOKEN)

    output = stream.getvalue()
    assert TOKEN not in output
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events][:2] == ["check_completed", "check_failed"]
    assert events[0]["batch_id"] == "b-1"
    assert "[REDACTED]" in events[0]["header"]
    # Frame locals would carry the token: they must not be rendered at all.
    assert all("locals" not in frame for frame in events[1]["exception"][0]["frames"])
    # The stdlib line is JSON too, and scrubbed.
    assert events[2]["logger"] == "httpx"
    assert events[2]["event"] == "sending Authorization: Bearer [REDACTED]"


def test_console_logs_scrub_token_from_tracebacks() -> None:
    stream = io.StringIO()
    configure_logging("info", "console", stream)
    try:
        _fail_with_token_in_a_local()
    except RuntimeError:
        structlog.get_logger("preflight").exception("check_failed")
    output = stream.getvalue()
    assert "check_failed" in output
    assert "Traceback" in output
    assert TOKEN not in output


def test_level_filters_events() -> None:
    stream = io.StringIO()
    configure_logging("warning", "json", stream)
    structlog.get_logger("preflight").info("check_completed")
    assert stream.getvalue() == ""


def test_deferred_logging_loads_nothing_until_an_event_passes_the_level() -> None:
    # The CLI defers its set-up: a check that logs only below the level never imports
    # structlog (~70 ms of a cold process).
    program = (
        "import io, logging, sys\n"
        "from preflight.logs import defer_logging, get_logger\n"
        "stream = io.StringIO()\n"
        "defer_logging('warning', 'json', stream)\n"
        "get_logger('preflight').info('check_completed', batch_id='b')\n"
        "get_logger('preflight').debug('internal_error', exc_info=RuntimeError('x'))\n"
        "logging.getLogger('httpx').info('HTTP Request: GET')\n"
        "print('structlog' in sys.modules, repr(stream.getvalue()))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == "False ''"
    assert run.stderr == ""


def test_deferred_logging_renders_the_first_event_that_passes_like_configured() -> None:
    stream = io.StringIO()
    defer_logging("warning", "json", stream)
    get_logger("preflight").bind(batch_id="b-1").info("check_completed")
    get_logger("preflight").bind(batch_id="b-1").warning("database_retry", header=TOKEN)
    logging.getLogger("httpx").warning("sending Authorization: Bearer %s", TOKEN)
    get_logger("preflight").info("check_completed")

    output = stream.getvalue()
    assert TOKEN not in output
    events = [json.loads(line) for line in output.splitlines()]
    assert [e["event"] for e in events] == [
        "database_retry",
        "sending Authorization: Bearer [REDACTED]",
    ]
    assert events[0]["batch_id"] == "b-1"
    assert events[0]["level"] == "warning"
    assert "timestamp" in events[0]
    assert events[1]["logger"] == "httpx"


def test_deferred_logging_is_set_up_by_the_first_stdlib_record_too() -> None:
    stream = io.StringIO()
    defer_logging("info", "console", stream)
    logging.getLogger("alembic").info("Running upgrade 0005 -> 0006")
    get_logger("preflight").info("check_completed", batch_id="b-2")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "Running upgrade 0005 -> 0006" in lines[0]
    assert "check_completed" in lines[1]
    assert "b-2" in lines[1]
