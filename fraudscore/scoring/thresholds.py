"""Decision thresholds on the 0-100 score, chosen from validation data.

- ``block``: the score at or above which a transaction is called fraud. It maximises F1 on the
  validation split (ties go to the higher score, i.e. fewer false alarms).
- ``review``: the lower edge of the review band ``[review, block)``. It is the lowest score whose
  band holds at most ``review_budget`` of all traffic (default 0.5%), so a review queue stays small
  while it catches the frauds the block threshold misses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

STATIC_BLOCK_THRESHOLD = 50  # what the FastAPI service this replaces used


@dataclass(frozen=True)
class Thresholds:
    block: int
    review: int

    def __post_init__(self) -> None:
        if not 1 <= self.review <= self.block <= 100:
            raise ValueError(f"thresholds need 1 <= review <= block <= 100, got {self}")

    def decide(self, score: int) -> str:
        if score >= self.block:
            return "block"
        if score >= self.review:
            return "review"
        return "approve"

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def to_scores(probabilities: np.ndarray) -> np.ndarray:
    """Fraud probability -> integer score 0-100."""
    return np.clip(np.rint(np.asarray(probabilities, dtype=np.float64) * 100.0), 0, 100).astype(np.int64)


def choose(scores: np.ndarray, y: np.ndarray, review_budget: float = 0.005) -> Thresholds:
    """Pick block and review thresholds from validation scores and labels."""
    scores = np.asarray(scores)
    y = np.asarray(y).astype(bool)
    best_t, best_f1 = STATIC_BLOCK_THRESHOLD, -1.0
    for t in range(1, 101):
        flagged = scores >= t
        tp = int((flagged & y).sum())
        denom = int(flagged.sum()) + int(y.sum())
        f1 = 2.0 * tp / denom if denom else 0.0
        if f1 >= best_f1:  # >= : on ties prefer the higher threshold
            best_t, best_f1 = t, f1
    review = best_t
    for r in range(best_t - 1, 0, -1):
        if ((scores >= r) & (scores < best_t)).mean() > review_budget:
            break
        review = r
    return Thresholds(block=best_t, review=review)
