"""Exact decimal arithmetic for amounts.

Python's default decimal context keeps 28 significant digits, so adding two 30-digit
balances rounds. Sums and differences of amounts run under a context wide enough
that they stay exact for any amount a vendor could send.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from decimal import localcontext
from typing import Final, ParamSpec, TypeVar

#: Significant digits: far more than any balance has, so + and - never round.
EXACT_PRECISION: Final = 200

P = ParamSpec("P")
R = TypeVar("R")


def exact(function: Callable[P, R]) -> Callable[P, R]:
    """Run ``function`` with a decimal context in which amount arithmetic never rounds."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with localcontext() as context:
            context.prec = max(context.prec, EXACT_PRECISION)
            return function(*args, **kwargs)

    return wrapper
