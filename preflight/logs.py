"""Logging: structlog events with stable snake_case names, secrets scrubbed last.

Two situations:

- **The CLI and the worker** call :func:`configure_logging`: JSON when stderr is not a
  TTY, console otherwise, always to stderr (stdout belongs to the command's output,
  which orchestrators parse), at ``PREFLIGHT_LOG_LEVEL``. The CLI defers it
  (:func:`defer_logging`): structlog (~70 ms to import) is imported and configured when
  the first event at an enabled level is emitted, ours or a stdlib logger's; a command
  that logs nothing at its level (a normal check, at the default ``warning``) never
  loads it.
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
import threading
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from preflight.secret import scrub

if TYPE_CHECKING:
    from types import ModuleType

    from structlog.typing import EventDict, Processor, WrappedLogger

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
        level = _METHOD_LEVELS[method]
        if _deferred is not None:  # the CLI's logging, set up on the first event it shows
            if level < _deferred.level:
                return
            _configure_deferred()
        merged = {**self._context, **values}
        structlog = _structlog_if_configured()
        if structlog is not None:
            getattr(structlog.get_logger(self._name), method)(event, **merged)
            return
        stdlib = logging.getLogger(self._name)
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


def _structlog_if_configured() -> ModuleType | None:
    """structlog, when something configured it (us, the host, ``capture_logs``); None
    otherwise, and always without importing it: if it was never imported, nothing did."""
    structlog = sys.modules.get("structlog")
    if structlog is None or not structlog.is_configured():
        return None
    return structlog


def get_logger(name: str) -> Logger:
    """The logger every preflight module uses (see the module docstring)."""
    return Logger(name)


def apply_level(level: str) -> None:
    """Give the ``preflight`` stdlib logger the configured level, unless the host set one."""
    logger = logging.getLogger("preflight")
    if logger.level == logging.NOTSET:
        logger.setLevel(_LEVELS.get(level, logging.WARNING))


@dataclass(frozen=True)
class _Deferred:
    level: int
    fmt: str
    stream: TextIO


#: What :func:`defer_logging` asked for, until the first event that passes its level.
_deferred: _Deferred | None = None
#: The root handler that set-up installed in place of the deferred one.
_installed: logging.Handler | None = None
_setting_up = threading.Lock()


class _DeferredHandler(logging.Handler):
    """The root handler while logging is deferred: the first stdlib record that reaches it
    (it passed the level) sets logging up, then goes where it would have gone."""

    def emit(self, record: logging.LogRecord) -> None:
        handler = _configure_deferred()
        if handler is not None and record.levelno >= handler.level:
            handler.handle(record)


def defer_logging(level: str = "warning", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """:func:`configure_logging`, done when the first event at ``level`` or above is
    emitted, by a preflight logger or a stdlib one. Until then only the stdlib levels are
    set (so that nothing below ``level`` even reaches a handler) and structlog is not
    imported. The stream is chosen now, as :func:`configure_logging` would."""
    global _deferred
    numeric_level = _LEVELS.get(level, logging.WARNING)
    _deferred = _Deferred(numeric_level, fmt, stream or sys.stderr)
    root = logging.getLogger()
    root.handlers[:] = [_DeferredHandler()]
    _set_levels(numeric_level)


def logging_set_up() -> bool:
    """Whether output is set up: configured (by us or the host), or deferred."""
    return _deferred is not None or _structlog_if_configured() is not None


def reset_deferred() -> None:
    """Forget a deferred set-up that never happened (tests undo process-wide state)."""
    global _deferred, _installed
    with _setting_up:
        _deferred = _installed = None


def _configure_deferred() -> logging.Handler | None:
    """Do the deferred set-up (once, whichever thread asks first); the root handler that
    took the deferred one's place."""
    global _deferred, _installed
    with _setting_up:
        deferred = _deferred
        if deferred is None:
            return _installed
        handler = _configure(deferred.level, deferred.fmt, deferred.stream)
        root = logging.getLogger()
        root.handlers[:] = [
            handler if isinstance(kept, _DeferredHandler) else kept for kept in root.handlers
        ]
        _installed, _deferred = handler, None
        return handler


def configure_logging(
    level: str = "warning", fmt: str = "auto", stream: TextIO | None = None
) -> None:
    """Configure structlog and the stdlib root logger once per process."""
    reset_deferred()
    numeric_level = _LEVELS.get(level, logging.WARNING)
    handler = _configure(numeric_level, fmt, stream or sys.stderr)
    logging.getLogger().handlers[:] = [handler]
    _set_levels(numeric_level)


def _set_levels(numeric_level: int) -> None:
    logging.getLogger().setLevel(numeric_level)
    # httpx logs every request at info; only worth it when debugging.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(
            logging.DEBUG if numeric_level <= logging.DEBUG else logging.WARNING
        )


def _configure(numeric_level: int, fmt: str, stream: TextIO) -> logging.Handler:
    """Configure structlog; the stdlib handler that renders like it."""
    import structlog  # cold path: `preflight check` (structlog costs ~70 ms)

    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())

    exception_processor: Processor = (
        # show_locals=False: frame locals would include the token.
        structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
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
    return handler
