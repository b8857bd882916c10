"""Before the 402: the guard's decision, the burns since the check, and the need estimated
from history. Pure functions of stored rows, exact (``Decimal``).

- Remaining need = max(need − consumed cost so far, 0) (:func:`outstanding_need`).
- ``stop`` when balance < next cost, or balance < remaining need; ``at_risk`` when
  remaining need ≤ balance < remaining need + the other open batches' outstanding need;
  ``continue`` otherwise. Without a need the decision is on the next cost alone.
- Burns since the check, each over the minutes from the batch's preflight snapshot to the
  snapshot the forecast reads: own consumed cost, and foreign consumption F exactly as the
  classifier measures it (:func:`preflight.domain.classify.foreign_consumption`).
- minutes_to_empty = balance / (own + foreign burn); minutes_to_finish = remaining need /
  own burn; ``runs_out_first`` when the first is (exactly) less than the second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, localcontext
from enum import StrEnum
from typing import Any, Final

from preflight.domain.classify import Reading, Spend, foreign_consumption
from preflight.domain.errors import UsageError
from preflight.domain.exact import exact
from preflight.domain.verdict import outstanding_need
from preflight.domain.wire import amount_text

__all__ = [
    "ESTIMATE_STATISTICS",
    "Burns",
    "Decision",
    "Forecast",
    "GuardAnswer",
    "NeedBasis",
    "burns_since_check",
    "decide",
    "estimate_need",
    "forecast",
    "minutes_text",
    "rate_text",
    "shortfall",
    "statistic",
]

ZERO: Final = Decimal(0)
#: Minutes are shown to a tenth; rates to a millionth (a cheap job's rate is no zero).
MINUTE_STEP: Final = Decimal("0.1")
RATE_STEP: Final = Decimal("0.000001")
ESTIMATE_STATISTICS: Final = ("mean", "p50", "p90", "p95", "max")
_QUANTILES: Final = {"p50": Decimal("0.5"), "p90": Decimal("0.9"), "p95": Decimal("0.95")}


class Decision(StrEnum):
    """The guard's answer (its exit codes are the contract's: :mod:`preflight.contract`)."""

    CONTINUE = "continue"
    AT_RISK = "at_risk"
    STOP = "stop"


def minutes_text(value: Decimal | None) -> str | None:
    """Minutes as a decimal string rounded to 0.1 (half to even): ``Decimal(6)`` → ``"6.0"``."""
    return None if value is None else format(value.quantize(MINUTE_STEP, ROUND_HALF_EVEN), "f")


def rate_text(value: Decimal | None) -> str | None:
    """A rate per minute rounded to a millionth, with at least one decimal: ``"10.0"``,
    ``"0.333333"``."""
    if value is None:
        return None
    text = format(value.quantize(RATE_STEP, ROUND_HALF_EVEN), "f").rstrip("0")
    return text + "0" if text.endswith(".") else text


@dataclass(frozen=True)
class Burns:
    """What burnt since the check: own consumed cost and foreign consumption F from the
    preflight snapshot to ``until``, each per minute (None when no time has passed)."""

    own: Decimal
    foreign: Decimal
    foreign_is_lower_bound: bool
    minutes: Decimal
    own_per_minute: Decimal | None
    foreign_per_minute: Decimal | None


@exact
def burns_since_check(
    start: Reading, end: Reading, readings: Sequence[Reading], own: Sequence[Spend]
) -> Burns:
    """Own cost in (start, end] and F over the same walk, per minute elapsed.

    ``start``: the batch's preflight snapshot; ``end``: the snapshot the forecast reads.
    Both must carry the meter.
    """
    spent = sum(
        (s.cost or ZERO for s in own if start.taken_at < s.at <= end.taken_at),
        ZERO,
    )
    if end.snapshot_id == start.snapshot_id or end.taken_at <= start.taken_at:
        return Burns(spent, ZERO, False, ZERO, None, None)
    foreign = foreign_consumption(start, end, readings, own)
    minutes = _minutes(end.taken_at - start.taken_at)
    return Burns(
        spent,
        foreign.amount,
        foreign.is_lower_bound,
        minutes,
        spent / minutes,
        foreign.amount / minutes,
    )


def _minutes(span: Any) -> Decimal:
    # timedelta → exact minutes (microsecond resolution, no float).
    micro = (span.days * 86_400 + span.seconds) * 1_000_000 + span.microseconds
    return Decimal(micro) / Decimal(60_000_000)


@dataclass(frozen=True)
class Forecast:
    """The projection of a batch from one reading: when the balance empties, when the
    batch finishes, which comes first, and how many more jobs the balance pays for."""

    balance: Decimal
    remaining_need: Decimal | None
    affordable_jobs: int | None
    own_burn_per_minute: Decimal | None
    foreign_burn_per_minute: Decimal | None
    minutes_to_empty: Decimal | None
    minutes_to_finish: Decimal | None
    runs_out_first: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "balance": amount_text(self.balance),
            "remaining_need": amount_text(self.remaining_need),
            "affordable_jobs": self.affordable_jobs,
            "own_burn_per_minute": rate_text(self.own_burn_per_minute),
            "foreign_burn_per_minute": rate_text(self.foreign_burn_per_minute),
            "minutes_to_empty": minutes_text(self.minutes_to_empty),
            "minutes_to_finish": minutes_text(self.minutes_to_finish),
            "runs_out_first": self.runs_out_first,
        }


@exact
def forecast(
    balance: Decimal,
    need: Decimal | None,
    consumed: Decimal,
    burns: Burns,
    succeeded_costs: Sequence[Decimal] = (),
    *,
    succeeded: tuple[int, Decimal] | None = None,
) -> Forecast:
    """Project the batch from ``balance``.

    ``consumed``: the batch's consumed cost so far; ``succeeded_costs``: the consumed cost of
    each of its succeeded jobs, or ``succeeded``: their count and total (``affordable_jobs``
    is None before the first, or when they cost nothing).
    """
    remaining = outstanding_need(need, consumed) if need is not None else None
    own, foreign = burns.own_per_minute, burns.foreign_per_minute
    total = (own or ZERO) + (foreign or ZERO)
    to_empty = balance / total if total > 0 else None
    to_finish = remaining / own if remaining is not None and own else None
    # Compared exactly (cross-multiplied), never on the rounded minutes.
    first = (
        to_empty is not None
        and to_finish is not None
        and own is not None
        and balance * own < (remaining or ZERO) * total
    )
    affordable: int | None = None
    jobs, paid = succeeded or (len(succeeded_costs), sum(succeeded_costs, ZERO))
    if jobs and paid > 0:
        # floor(balance / (paid / n)) = floor(balance · n / paid), exactly.
        affordable = int((balance * jobs / paid).to_integral_value(ROUND_FLOOR))
    return Forecast(
        balance=balance,
        remaining_need=remaining,
        affordable_jobs=affordable,
        own_burn_per_minute=own,
        foreign_burn_per_minute=foreign,
        minutes_to_empty=_estimate(to_empty),
        minutes_to_finish=_estimate(to_finish),
        runs_out_first=first,
    )


@exact
def shortfall(projection: Forecast) -> Decimal | None:
    """What the batch would lack when the balance runs out first: the remaining need less
    its own share of the balance (balance × own burn / both burns). None otherwise."""
    own, foreign = projection.own_burn_per_minute, projection.foreign_burn_per_minute
    if not projection.runs_out_first or not own or projection.remaining_need is None:
        return None
    share = projection.balance * own / (own + (foreign or ZERO))
    return _estimate(max(projection.remaining_need - share, ZERO))


def _estimate(value: Decimal | None) -> Decimal | None:
    # A quotient: 28 digits are plenty, and keep the stored/printed value short.
    if value is None:
        return None
    with localcontext() as context:
        context.prec = 28
        return +value


@dataclass(frozen=True)
class GuardAnswer:
    decision: Decision
    reason: str
    outstanding_other: Decimal


@exact
def decide(
    balance: Decimal,
    remaining_need: Decimal | None,
    outstanding_other: Decimal,
    next_cost: Decimal | None = None,
) -> GuardAnswer:
    """The guard's decision between two dispatches (see the module docstring).

    A usage error when neither a need nor a next cost is known: nothing to decide on.
    """
    if remaining_need is None and next_cost is None:
        raise UsageError(
            "next_cost: the batch declared no need, so the guard needs --next-cost to decide"
        )
    b = amount_text(balance)
    if next_cost is not None and balance < next_cost:
        return GuardAnswer(
            Decision.STOP,
            f"balance {b} is below the next job's cost {amount_text(next_cost)}",
            outstanding_other,
        )
    if remaining_need is not None:
        r, o = amount_text(remaining_need), amount_text(outstanding_other)
        if balance < remaining_need:
            return GuardAnswer(
                Decision.STOP, f"balance {b} is below the remaining need {r}", outstanding_other
            )
        if balance < remaining_need + outstanding_other:
            return GuardAnswer(
                Decision.AT_RISK,
                f"balance {b} covers the remaining need {r} but not with {o} "
                "still outstanding for other open batches",
                outstanding_other,
            )
        return GuardAnswer(
            Decision.CONTINUE,
            f"balance {b} covers the remaining need {r} and {o} outstanding for other batches",
            outstanding_other,
        )
    assert next_cost is not None
    return GuardAnswer(
        Decision.CONTINUE,
        f"balance {b} covers the next job's cost {amount_text(next_cost)}",
        outstanding_other,
    )


# ---------------------------------------------------------------- need from history


@exact
def statistic(name: str, values: Sequence[Decimal]) -> Decimal:
    """``mean``, ``max``, or a nearest-rank quantile (``p50``/``p90``/``p95``: the ⌈q·n⌉-th
    smallest) of ``values`` (at least one)."""
    if not values:
        raise ValueError("no values")
    if name == "mean":
        with localcontext() as context:
            context.prec = 28
            return +(sum(values, ZERO) / len(values))
    if name == "max":
        return max(values)
    if name not in _QUANTILES:
        raise UsageError(f"estimate: must be one of {', '.join(ESTIMATE_STATISTICS)}, not {name!r}")
    rank = int((_QUANTILES[name] * len(values)).to_integral_value(ROUND_CEILING))
    return sorted(values)[max(rank, 1) - 1]


@dataclass(frozen=True)
class NeedBasis:
    """How an estimated need was made: N jobs × the statistic per job, over the sample."""

    jobs: int
    statistic: str
    per_job: Decimal
    sample_jobs: int
    sample_batches: int
    label: str  # KEY=VALUE

    @property
    @exact
    def need(self) -> Decimal:
        """``jobs`` × ``per_job``, without the trailing zeros a product grows (31.6…670)."""
        value = self.per_job * self.jobs
        if value == value.to_integral_value():
            return value.quantize(Decimal(1))
        return value.normalize()

    def to_dict(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "statistic": self.statistic,
            "per_job": amount_text(self.per_job),
            "sample_jobs": self.sample_jobs,
            "sample_batches": self.sample_batches,
            "label": self.label,
        }


def estimate_need(
    jobs: int,
    name: str,
    label: str,
    samples: Sequence[Sequence[Decimal]],
    *,
    min_history: int,
) -> NeedBasis:
    """The need of ``jobs`` jobs from ``samples`` (the succeeded jobs' consumed costs, one
    sequence per past batch). A usage error, naming the count found, when fewer than
    ``min_history`` jobs are in the sample."""
    if jobs < 1:
        raise UsageError(f"jobs: must be a positive whole number, not {jobs}")
    if name not in ESTIMATE_STATISTICS:
        raise UsageError(f"estimate: must be one of {', '.join(ESTIMATE_STATISTICS)}, not {name!r}")
    values = [cost for batch in samples for cost in batch]
    if len(values) < max(min_history, 1):
        raise UsageError(
            f"estimate_from: {len(values)} succeeded job(s) with a cost found in finished "
            f"batches labelled {label}, fewer than the {max(min_history, 1)} required "
            "(min_history)"
        )
    return NeedBasis(
        jobs=jobs,
        statistic=name,
        per_job=statistic(name, values),
        sample_jobs=len(values),
        sample_batches=sum(1 for batch in samples if batch),
        label=label,
    )


def parse_label(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` → (key, value); a usage error naming the field otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise UsageError(f"estimate_from: must be KEY=VALUE, not {text!r}")
    return key, value


def age_seconds(now: datetime, taken_at: datetime) -> int:
    """Whole seconds since ``taken_at`` (0 when the clock reads earlier)."""
    return max(int((now - taken_at).total_seconds()), 0)
