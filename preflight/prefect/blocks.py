"""The connection Block: where preflight is, and who asks."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from preflight.api import Preflight
from preflight.errors import ConfigError

__all__ = ["PreflightConnection"]


class PreflightConnection(Block):
    """How Prefect reaches preflight.

    ``url`` is the base URL of a ``preflight serve`` (remote mode) and ``token`` its API
    token (a secret: the preflight token, never the vendor's). Without ``url`` it is local
    mode, configured from the ``PREFLIGHT_*`` environment exactly as the CLI (which also
    means remote mode when ``PREFLIGHT_SERVER_URL`` is set there). ``account`` names the
    account the tasks use when they are not given one (None: the configured default).
    """

    _block_type_name = "Preflight Connection"
    _block_type_slug = "preflight-connection"
    _description = "A preflight server (or local mode): balance checks and outcomes."
    _documentation_url = None

    url: str | None = Field(
        default=None, description="Base URL of `preflight serve`; empty: local mode."
    )
    token: SecretStr | None = Field(
        default=None, description="The preflight API token (remote mode only)."
    )
    account: str | None = Field(default=None, description="The account; empty: the default.")

    def get_client(self) -> Preflight:
        """A new facade for this connection; close it (``with``) when done."""
        if self.url:
            if self.token is None:
                raise ConfigError("token: a PreflightConnection with a url needs its API token")
            return Preflight.remote(self.url, self.token.get_secret_value())
        return Preflight()
