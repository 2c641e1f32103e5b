"""The plain sentence of a reason: where a value stands among the training transactions.

The model entry keeps a 1,001-point quantile grid of each feature over the training split
(``explain.QUANTILE_POINTS``, written by training/explain_export.py); a sentence reads it with a
binary search on a Python list (0.15 µs; ``np.searchsorted`` on a numpy row costs 1.2 µs a call).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence


def describe(feature: str, value: float, grid: Sequence[float]) -> str:
    """"V14 = -9.50 is lower than 99.9% of training transactions": where ``value`` stands among the
    training values whose quantile grid (``explain.QUANTILE_POINTS`` points, inverted CDF) is ``grid``.

    Below the median the sentence gives a lower bound on the share of training values above it;
    at or above the median, on the share below it (both floored to 0.1%, so never "100.0%").
    Outside the training range it says "every training transaction"; a value tied with the median
    is "at the median"."""
    text = f"{value:,.2f}"
    if text.lstrip("-").strip("0.,") == "":
        text = text.lstrip("-")  # no "-0.00"
    head = f"{feature} = {text} is"
    last = len(grid) - 1
    if not math.isfinite(value):
        return f"{head} not a finite number"
    if value < grid[last // 2]:
        k = bisect_right(grid, value)  # first grid point above value
        if k == 0:
            return f"{head} lower than every training transaction"
        return f"{head} lower than {(last - k) * 100 / last:.1f}% of training transactions"
    k = bisect_left(grid, value) - 1  # last grid point below value
    if k == last:
        return f"{head} higher than every training transaction"
    if k < last // 2:  # no grid point below it up to the median: it is the (tied) median
        return f"{head} at the median of training transactions"
    return f"{head} higher than {k * 100 / last:.1f}% of training transactions"
