"""Exit codes of the CLI, in one table (README, "Exit codes").

Errors carry no exit code: each edge maps the error tree to its own codes, the CLI here,
the HTTP app to statuses. A verdict's code comes from :func:`preflight.contract.exit_code`
(the table the HTTP check answer shares).
"""

from __future__ import annotations

from typing import Final

from preflight.errors import (
    AuthError,
    BillingBlockedError,
    NoGoError,
    PreflightError,
    StorageError,
    UsageError,
    VendorRejectedError,
    VendorUnavailableError,
)

OK: Final = 0
INTERNAL: Final = 1
USAGE: Final = 2
STORAGE: Final = 3
#: ``guard`` said ``stop`` (its ``at_risk`` with ``--strict`` is 14, as a check's); a
#: decision's code comes from :func:`preflight.contract.guard_exit_code`.
GUARD_STOP: Final = 15
INTERRUPTED: Final = 130

#: Most specific first: the first class an error is an instance of gives its code.
_BY_ERROR: Final[tuple[tuple[type[PreflightError], int], ...]] = (
    (UsageError, USAGE),
    (AuthError, 11),
    (BillingBlockedError, 12),
    (VendorRejectedError, USAGE),
    (VendorUnavailableError, 13),
    (StorageError, STORAGE),
)


def exit_code_of(error: PreflightError) -> int:
    """The documented exit code of ``error``."""
    if isinstance(error, NoGoError):
        # The contract's table and the domain it reads: a no-go's only.
        from preflight.contract import exit_code  # cold path: `preflight --help`
        from preflight.domain.verdict import Verdict  # cold path: `preflight --help`

        return exit_code(Verdict(error.verdict), strict=error.strict)
    return next((code for kind, code in _BY_ERROR if isinstance(error, kind)), INTERNAL)
