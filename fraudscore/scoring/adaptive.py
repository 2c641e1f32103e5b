"""Target-rate thresholds (FRAUD_THRESHOLD_MODE=target-rate): the block threshold follows the
score that holds the block rate at FRAUD_TARGET_BLOCK_RATE over the last scores of this worker.

- The window: the last FRAUD_THRESHOLD_WINDOW scores (a ring of bytes and a count per score 0-100).
- The threshold: the lowest score ``t`` with share(scores >= t) <= target, clamped to bounds.
- Bounds, from the model entry's validation scores (``threshold_reference.alert_rates``: the
  share of validation scores >= t, for t = 0..100): ``low`` is the lowest score whose validation
  alert rate is at most 4x the target, ``high`` the lowest whose rate is at most 0.25x the target.
  A stream that drifts far (a broken feed scoring everything 0, or 100) cannot drag the threshold
  outside what the target meant on the data the model was validated on.
- The start: the lowest score whose validation alert rate is at most the target (so the first
  minutes, before the window is full enough, already aim at the target).
- It moves only when the window holds at least min(window, 20 / target) scores (about 20 blocks
  at the target), and only when the rate at the current threshold has left
  [target / TOLERANCE, target x TOLERANCE]: scores are integers, and without that band a rate
  hovering at a boundary would flip the threshold every update.
- The review edge keeps the band width of the static thresholds: review = max(1, block - width).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .thresholds import Thresholds

TOLERANCE = 1.25
BOUND_FACTORS = (4.0, 0.25)  # validation alert rates of the low and high bounds, x the target


def _lowest_at_most(rates: np.ndarray, rate: float) -> int:
    """The lowest score 1-100 whose rate is at most ``rate`` (100 if none is)."""
    ok = np.flatnonzero(rates[1:] <= rate)
    return int(ok[0]) + 1 if ok.size else 100


class TargetRate:
    def __init__(self, target: float, window: int, alert_rates: Sequence[float], static: Thresholds) -> None:
        rates = np.asarray(alert_rates, dtype=np.float64)
        if rates.shape != (101,):
            raise ValueError("threshold_reference.alert_rates needs 101 values (scores 0-100)")
        self.target, self.window = target, window
        self.low = _lowest_at_most(rates, BOUND_FACTORS[0] * target)
        self.high = max(self.low, _lowest_at_most(rates, BOUND_FACTORS[1] * target))
        self._width = static.block - static.review
        self.min_rows = min(window, math.ceil(20 / target))
        self.thresholds = self._with_review(self._clamp(_lowest_at_most(rates, target)))
        self._ring = np.zeros(window, dtype=np.uint8)
        self._counts = np.zeros(101, dtype=np.int64)
        self._pos = self.filled = 0

    def _clamp(self, block: int) -> int:
        return min(max(block, self.low), self.high)

    def _with_review(self, block: int) -> Thresholds:
        return Thresholds(block=block, review=max(1, block - self._width))

    def add(self, scores: np.ndarray) -> None:
        """Scores (integers 0-100) into the window, the oldest out."""
        scores = scores[-self.window:]
        m = len(scores)
        if m == 0:
            return
        idx = (self._pos + np.arange(m)) % self.window
        old = self._ring[idx] if self.filled == self.window else self._ring[idx[idx < self.filled]]
        if len(old):
            self._counts -= np.bincount(old, minlength=101)
        self._counts += np.bincount(scores, minlength=101)
        self._ring[idx] = scores
        self._pos = (self._pos + m) % self.window
        self.filled = min(self.window, self.filled + m)

    def rate_at(self, block: int) -> float:
        """The share of the window's scores at or above ``block``."""
        return float(self._counts[block:].sum()) / self.filled if self.filled else 0.0

    def update(self) -> tuple[Thresholds, Thresholds] | None:
        """Recompute; (old, new) when the thresholds changed, else None."""
        if self.filled < self.min_rows:
            return None
        current = self.thresholds.block
        if self.target / TOLERANCE <= self.rate_at(current) <= self.target * TOLERANCE:
            return None
        tail = np.cumsum(self._counts[::-1])[::-1] / self.filled  # tail[t] = share >= t
        block = self._clamp(_lowest_at_most(tail, self.target))
        if block == current:
            return None
        old, self.thresholds = self.thresholds, self._with_review(block)
        return old, self.thresholds
