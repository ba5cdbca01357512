"""The one percentile definition every twittercore report uses: nearest rank.

The ``p``-th percentile of ``n`` samples is the smallest sample such that at
least ``p`` percent of the samples are less than or equal to it: the sample
of (1-based) rank ``ceil(p * n / 100)`` in ascending order, and the smallest
sample for ``p = 0``.  It is always one of the measured values (never an
interpolation), which is what a latency report wants: "p99 = 4.1 ms" means
some request really took 4.1 ms and 99 % took no longer.

The rank is computed from the decimal value of ``p`` in exact arithmetic, so
``p = 99.9`` of 1,000 samples is the 999th sample, not the 1,000th that
``ceil(99.9 / 100 * 1000)`` gives in binary floating point.

>>> percentile([5, 1, 3], 50)
3
>>> samples = list(range(1, 1001))
>>> percentile(samples, 99.9), percentile(samples, 100), percentile(samples, 0)
(999, 1000, 1)
>>> summary(samples, (50, 99))
{'p50': 500, 'p99': 990}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

from ..errors import InvalidArgumentError

__all__ = ["percentile", "rank", "summary"]


def rank(p: float, n: int) -> int:
    """The 0-based index of the nearest-rank ``p``-th percentile among ``n`` sorted samples (n >= 1)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 100:
        raise InvalidArgumentError(f"percentile: p={p!r} is not a number from 0 to 100 (e.g. 99.9)")
    exact = Fraction(str(p)) * n / 100  # str(): the decimal the caller wrote, not the binary float
    return max(0, min(n, math.ceil(exact)) - 1)


def percentile(values: Iterable[Any], p: float, *, presorted: bool = False) -> Any:
    """The nearest-rank ``p``-th percentile (0 <= p <= 100) of ``values``; 0.0 when there are none.

    Runtime complexity: O(n log n) to sort, O(n) with ``presorted=True``
    (the caller promises ascending order).
    """
    ordered: Sequence[Any] = values if presorted and isinstance(values, Sequence) else sorted(values)
    if not ordered:
        rank(p, 1)  # still reject a bad p
        return 0.0
    return ordered[rank(p, len(ordered))]


def summary(values: Iterable[Any], ps: Iterable[float] = (50, 90, 99, 99.9)) -> dict[str, Any]:
    """``{"p50": ..., "p99.9": ...}`` for each ``p`` in ``ps``, sorting once."""
    ordered = sorted(values)
    return {f"p{p:g}": percentile(ordered, p, presorted=True) for p in ps}
