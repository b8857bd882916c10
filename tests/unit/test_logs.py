from __future__ import annotations

import io
import json
import logging

import structlog

from preflight.logs import configure_logging
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
