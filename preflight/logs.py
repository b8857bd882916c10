"""structlog set-up: JSON when stderr is not a TTY, console otherwise; secrets scrubbed last.

Events have stable snake_case names (``check_completed``, ``vendor_request_retry``…)
and carry ``batch_id`` when one is bound. Logs go to stderr: stdout belongs to the
command's output, which orchestrators parse.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

from preflight.secret import scrub

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, MutableMapping):
        return {key: _scrub_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(item) for item in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return scrub(repr(value))


def redact_secrets(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Replace every known token (and any bearer credential) anywhere in the event."""
    return {key: _scrub_value(value) for key, value in event_dict.items()}


def configure_logging(
    level: str = "warning", fmt: str = "auto", stream: TextIO | None = None
) -> None:
    """Configure structlog and the stdlib root logger once per process."""
    stream = stream or sys.stderr
    numeric_level = _LEVELS.get(level, logging.WARNING)
    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())

    exception_processor: Processor = (
        # show_locals=False: frame locals would include the token.
        structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
        if as_json
        else structlog.processors.format_exc_info
    )
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            exception_processor,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )

    # Lines from stdlib loggers (httpx, httpcore, alembic) go through the same
    # redaction and renderer, so stderr is one format.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                exception_processor,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact_secrets,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    # httpx logs every request at info; only worth it when debugging.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(
            logging.DEBUG if numeric_level <= logging.DEBUG else logging.WARNING
        )
