"""The bundled sandbox vendor (see :mod:`preflight.sandbox.server`)."""

from preflight.sandbox.server import DEFAULT_TOKEN, UNSET, SandboxServer, serve_forever

__all__ = ["DEFAULT_TOKEN", "UNSET", "SandboxServer", "serve_forever"]
