"""The service's feature checks, applied to whole columns at once.

The bounds are read from the request schema (:class:`fraudscore.schemas.TransactionIn`), not
restated: every feature finite and within float32 range, Amount >= 0. A constraint this module
does not know makes it refuse to run rather than check less than the service does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import annotated_types
import numpy as np

from ..features import FEATURES
from ..schemas import TransactionIn

FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Violation:
    row: int  # index of the offending row in the block checked
    column: str
    value: float | None  # None: the value is missing
    problem: str  # e.g. "is not finite", "is negative", "missing value"

    def describe(self) -> str:
        if self.value is None:
            return f"column {self.column}: {self.problem}"
        return f"column {self.column}: {self.value!r} {self.problem}"


@lru_cache(maxsize=1)
def feature_bounds() -> tuple[tuple[float, float], ...]:
    """(lowest, highest) allowed value of each feature, in FEATURES order (both inclusive)."""
    if TransactionIn.model_config.get("allow_inf_nan", True):
        raise TypeError("TransactionIn accepts non-finite numbers: offline/checks.py must follow it")
    bounds = []
    for name in FEATURES:
        low, high = -np.inf, np.inf
        for c in TransactionIn.model_fields[name].metadata:
            if isinstance(c, annotated_types.Ge):
                low = max(low, float(c.ge))
            elif isinstance(c, annotated_types.Le):
                high = min(high, float(c.le))
            else:
                raise TypeError(f"TransactionIn.{name} has a constraint offline/checks.py "
                                f"does not apply: {c!r}")
        bounds.append((low, high))
    return tuple(bounds)


def first_violation(columns: Sequence[np.ndarray]) -> Violation | None:
    """The first value the service would refuse, in row order then FEATURES order, among
    ``columns`` (the 30 features' float64 values, FEATURES order); None when all pass."""
    first: Violation | None = None
    for name, col, (low, high) in zip(FEATURES, columns, feature_bounds(), strict=True):
        lo, hi = col.min(), col.max()  # NaN propagates, so NaN fails here too
        if lo >= low and hi <= high:  # the common case: two reductions instead of a pass per test
            continue
        with np.errstate(invalid="ignore"):
            ok = (col >= low) & (col <= high)  # NaN compares False: caught here too
        if ok.all():
            continue
        row = int(np.argmin(ok))
        if first is None or row < first.row:
            first = Violation(row, name, float(col[row]), _problem(float(col[row]), low))
    return first


def _problem(value: float, low: float) -> str:
    if not np.isfinite(value):
        return "is not finite"
    if abs(value) > FLOAT32_MAX:
        return "is outside float32 range"
    if value < low:
        return f"is below {low:g}" if low else "is negative"
    return "is out of range"
