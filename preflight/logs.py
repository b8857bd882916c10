"""Logging: structlog events with stable snake_case names, secrets scrubbed last.

Two situations:

- **The CLI and the worker** call :func:`configure_logging`: JSON when stderr is not a
  TTY, console otherwise, always to stderr (stdout belongs to the command's output,
  which orchestrators parse), at ``PREFLIGHT_LOG_LEVEL``.
- **A library user** (``from preflight import Preflight``) configured nothing of ours.
  preflight then never prints on its own: its events go to the stdlib logger of the same
  name (``preflight``, ``preflight.vendor``…), so the host's logging set-up decides where
  they go; with none, Python's last-resort handler writes warnings and errors to stderr.
  :func:`apply_level` sets the ``preflight`` logger's level from the settings unless the
  host set one. A host that configured structlog itself gets our events through it.

Events carry ``batch_id`` when one is bound.
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


_CONFIGURED_BY_US = False


class Logger:
    """A structlog-style logger that is safe in a library.

    When structlog is configured (by :func:`configure_logging`, by the host application,
    or by ``structlog.testing.capture_logs``) events go through that configuration;
    otherwise through the stdlib logger of the same name, never to stdout.
    """

    def __init__(self, name: str, context: dict[str, Any] | None = None) -> None:
        self._name = name
        self._context = context or {}

    def bind(self, **values: Any) -> Logger:
        return Logger(self._name, {**self._context, **values})

    def _emit(self, method: str, event: str, values: dict[str, Any]) -> None:
        merged = {**self._context, **values}
        if structlog.is_configured():
            getattr(structlog.get_logger(self._name), method)(event, **merged)
            return
        stdlib = logging.getLogger(self._name)
        level = _METHOD_LEVELS[method]
        if not stdlib.isEnabledFor(level):
            return
        exc_info = merged.pop("exc_info", None) or method == "exception"
        fields = redact_secrets(stdlib, method, merged)
        text = " ".join([event, *(f"{key}={value!r}" for key, value in fields.items())])
        # The rendered text is scrubbed; a traceback is logged without frame locals.
        stdlib.log(level, "%s", scrub(text), exc_info=bool(exc_info))

    def debug(self, event: str, **values: Any) -> None:
        self._emit("debug", event, values)

    def info(self, event: str, **values: Any) -> None:
        self._emit("info", event, values)

    def warning(self, event: str, **values: Any) -> None:
        self._emit("warning", event, values)

    def error(self, event: str, **values: Any) -> None:
        self._emit("error", event, values)

    def exception(self, event: str, **values: Any) -> None:
        self._emit("exception", event, values)


_METHOD_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
}


def get_logger(name: str) -> Logger:
    """The logger every preflight module uses (see the module docstring)."""
    return Logger(name)


def apply_level(level: str) -> None:
    """Give the ``preflight`` stdlib logger the configured level, unless the host set one."""
    logger = logging.getLogger("preflight")
    if logger.level == logging.NOTSET:
        logger.setLevel(_LEVELS.get(level, logging.WARNING))


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
