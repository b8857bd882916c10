"""The public home of preflight's errors: ``from preflight.errors import UsageError``.

The tree itself, drawn in its docstring, lives in :mod:`preflight.domain.errors` (pure:
the domain raises these too); this module is where callers of the Python API import it.
"""

from __future__ import annotations

from preflight.domain import errors as _tree
from preflight.domain.errors import *  # noqa: F403 - the whole tree, as listed there

__all__ = _tree.__all__
