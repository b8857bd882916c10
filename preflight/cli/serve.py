"""``preflight serve``: the HTTP API on uvicorn (the ``server`` extra)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import click

from preflight.cli.support import load_cli_settings
from preflight.services.runtime import Runtime

try:
    import uvicorn

    from preflight.http.app import create_app
    from preflight.http.server import uvicorn_config
except ImportError as missing:  # the server extra is optional: `serve` says what to install
    _MISSING: str | None = missing.name
else:
    _MISSING = None

if TYPE_CHECKING:
    from types import FrameType


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port, printed at start).",
)
def serve(host: str, port: int) -> int:
    """Serve the HTTP API: the same verbs as the CLI, over JSON, on the local database.

    Routes need `Authorization: Bearer <token>` (`preflight token create`), except
    /healthz. The OpenAPI document is /openapi.json, interactive docs /docs. Runs until
    SIGTERM / SIGINT. Remote-mode settings (PREFLIGHT_SERVER_URL) are ignored here.
    """
    if _MISSING is not None:
        raise click.UsageError(
            f"the HTTP API needs the server extra: pip install 'preflight[server]' ({_MISSING})"
        )
    settings = load_cli_settings()
    app = create_app(Runtime(settings), close_runtime=True)
    # "Uvicorn running on http://HOST:PORT" (the real port when --port 0) whatever the level.
    logging.getLogger("uvicorn.error").setLevel(logging.INFO)
    config = uvicorn_config(
        app,
        settings,
        host=host,
        port=port,
        # None: uvicorn's loggers go through ours (one format, secrets scrubbed).
        log_config=None,
        access_log=settings.log_level in ("debug", "info"),
        server_header=False,
        timeout_graceful_shutdown=30,
    )

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            # uvicorn re-raises SIGTERM/SIGINT once it has shut down gracefully, so the
            # process would die by the signal; a graceful stop exits 0, as `worker` does.
            getattr(self, "_captured_signals", []).clear()

    Server(config).run()
    return 0
