"""Vendor adapters: how each vendor's balance is read and its quota failures recognised.

An account names its adapter with ``vendor = "NAME"`` in its ``[accounts.NAME]`` table (the
default account: ``PREFLIGHT_VENDOR`` or the top-level ``vendor`` key); without one it is
``default``, the profile API preflight started with. :func:`build_adapter` checks the
account's options and returns the adapter; nothing here does I/O.

    base          Adapter, Reading, the reading helpers
    builtin       default, openrouter, elevenlabs, deepgram, deepseek
    declarative   any other vendor, described in TOML
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from preflight.adapters.base import METER_NAME, Adapter, Reading
from preflight.adapters.builtin import BUILTIN, ProfileAdapter
from preflight.adapters.declarative import KEYS, build
from preflight.domain.errors import ConfigError

__all__ = [
    "ADAPTER_NAMES",
    "DEFAULT_ADAPTER",
    "METER_NAME",
    "OPTION_KEYS",
    "Adapter",
    "Reading",
    "build_adapter",
]

DEFAULT_ADAPTER: Final[Adapter] = ProfileAdapter()
ADAPTER_NAMES: Final = (*BUILTIN, "declarative")

#: The keys each adapter takes in an account's table (beside token_*, vendor, vendor_url).
OPTION_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "default": (),
    "openrouter": ("management_key",),
    "elevenlabs": (),
    "deepgram": ("project_id",),
    "deepseek": (),
}


def build_adapter(vendor: str, options: Mapping[str, object], where: str) -> Adapter:
    """The adapter ``vendor`` configured with ``options``; ConfigError naming what is wrong.

    ``where`` names the table in messages (``[accounts.team-b]``).
    """
    if vendor == "declarative":
        _no_unknown(options, KEYS, where)
        return build(options, where)
    if vendor not in BUILTIN:
        raise ConfigError(
            f"{where} vendor: must be one of {', '.join(ADAPTER_NAMES)}, not {vendor!r}"
        )
    _no_unknown(options, OPTION_KEYS[vendor], where)
    if vendor == "default":
        return DEFAULT_ADAPTER
    checked: dict[str, object] = {}
    if vendor == "openrouter" and "management_key" in options:
        if not isinstance(options["management_key"], bool):
            raise ConfigError(f"{where} management_key: must be true or false")
        checked["management_key"] = options["management_key"]
    if vendor == "deepgram":
        project = options.get("project_id")
        if not isinstance(project, str) or not project or not project.replace("-", "").isalnum():
            raise ConfigError(
                f"{where} project_id: the Deepgram project id (letters, digits and -) is required"
            )
        checked["project_id"] = project
    return BUILTIN[vendor](options=checked)


def _no_unknown(options: Mapping[str, object], known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} for this vendor")
