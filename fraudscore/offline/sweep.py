"""Thresholds against labelled scores: alert rate, precision, recall and expected cost.

Everything is computed from per-score counts (101 bins: the integer score 0-100 the service
decides on), so any number of rows fits in a few arrays and each of the 5,050 (block, review)
pairs costs a subtraction. The cost model of a policy (block >= ``block``, review the band
``[review, block)``, approve below):
- a fraud approved costs ``miss`` (a fixed amount, or the transaction's Amount);
- a legitimate transaction blocked costs ``decline`` (a false decline: lost sale, angry customer);
- every reviewed transaction costs ``review``, and review catches the frauds it sees;
- a fraud blocked costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCORES = 101  # 0..100
THRESHOLDS = np.arange(1, 101)


@dataclass(frozen=True)
class ScoreCounts:
    """Labelled traffic reduced to counts per score."""

    legit: np.ndarray  # int64[101]: legitimate rows with each score
    fraud: np.ndarray  # int64[101]
    fraud_amount: np.ndarray  # float64[101]: sum of Amount of the frauds with each score
    days: float  # how long the traffic lasted (for reviews per day)

    @classmethod
    def empty(cls, days: float = 1.0) -> ScoreCounts:
        return cls(np.zeros(SCORES, np.int64), np.zeros(SCORES, np.int64), np.zeros(SCORES), days)

    @classmethod
    def of(cls, scores: np.ndarray, y: np.ndarray, amount: np.ndarray, days: float = 1.0) -> ScoreCounts:
        y = np.asarray(y).astype(bool)
        scores = np.asarray(scores)
        return cls(np.bincount(scores[~y], minlength=SCORES), np.bincount(scores[y], minlength=SCORES),
                   np.bincount(scores[y], weights=np.asarray(amount, np.float64)[y], minlength=SCORES), days)

    def __add__(self, other: ScoreCounts) -> ScoreCounts:
        return ScoreCounts(self.legit + other.legit, self.fraud + other.fraud,
                           self.fraud_amount + other.fraud_amount, self.days)

    def with_days(self, days: float) -> ScoreCounts:
        return ScoreCounts(self.legit, self.fraud, self.fraud_amount, days)

    @property
    def rows(self) -> int:
        return int(self.legit.sum() + self.fraud.sum())


@dataclass(frozen=True)
class Costs:
    miss: float | None  # cost of an approved fraud; None: its Amount
    decline: float  # cost of a blocked legitimate transaction
    review: float  # cost of one review


def _at_or_above(a: np.ndarray) -> np.ndarray:
    """x[t] = sum of a[s] for s >= t, for t = 0..101."""
    return np.concatenate([np.cumsum(a[::-1])[::-1], [0]])


def sweep(counts: ScoreCounts, costs: Costs) -> dict[str, np.ndarray]:
    """One value per threshold t = 1..100 of a block-only policy (flag score >= t)."""
    legit, fraud = _at_or_above(counts.legit)[1:101], _at_or_above(counts.fraud)[1:101]
    flagged = legit + fraud
    frauds = max(int(counts.fraud.sum()), 1)
    return {
        "threshold": THRESHOLDS,
        "alerts": flagged,
        "alert_rate": flagged / max(counts.rows, 1),
        "precision": np.divide(fraud, flagged, out=np.ones(100), where=flagged > 0),
        "recall": fraud / frauds,
        "cost": policy_costs(counts, costs)[np.arange(100), np.arange(100)],
    }


def policy_costs(counts: ScoreCounts, costs: Costs) -> np.ndarray:
    """cost[b-1, r-1] of blocking at b and reviewing [r, b); NaN where r > b."""
    legit, fraud = _at_or_above(counts.legit), _at_or_above(counts.fraud)
    missed = _at_or_above(counts.fraud_amount if costs.miss is None else counts.fraud * costs.miss)
    b, r = THRESHOLDS[:, None], THRESHOLDS[None, :]
    reviewed = (legit[r] + fraud[r]) - (legit[b] + fraud[b])
    cost = (missed[0] - missed[r]) + costs.decline * legit[b] + costs.review * reviewed
    return np.where(r <= b, cost.astype(np.float64), np.nan)


@dataclass(frozen=True)
class Outcome:
    """What a (block, review) policy does to the labelled traffic."""

    block: int
    review: int
    cost: float
    cost_per_day: float
    reviews_per_day: float
    blocked_per_day: float
    recall: float  # frauds blocked or reviewed
    block_precision: float
    declined_legit: int
    missed_frauds: int


def outcome(counts: ScoreCounts, costs: Costs, block: int, review: int) -> Outcome:
    legit, fraud = _at_or_above(counts.legit), _at_or_above(counts.fraud)
    cost = float(policy_costs(counts, costs)[block - 1, review - 1])
    blocked = int(legit[block] + fraud[block])
    reviewed = int(legit[review] + fraud[review]) - blocked
    total_fraud = int(counts.fraud.sum())
    precision = float(fraud[block] / blocked) if blocked else 1.0
    return Outcome(block, review, cost, cost / counts.days, reviewed / counts.days, blocked / counts.days,
                   float(fraud[review] / max(total_fraud, 1)), precision, int(legit[block]),
                   total_fraud - int(fraud[review]))


def recommend(counts: ScoreCounts, costs: Costs, reviews_per_day: float) -> Outcome:
    """The cheapest policy whose review band stays within ``reviews_per_day``; among equal costs,
    the one with fewer reviews, then the higher block threshold, then the higher review edge."""
    legit, fraud = _at_or_above(counts.legit), _at_or_above(counts.fraud)
    b, r = THRESHOLDS[:, None], THRESHOLDS[None, :]
    reviewed = (legit[r] + fraud[r]) - (legit[b] + fraud[b])
    cost = policy_costs(counts, costs)
    allowed = (r <= b) & (reviewed / counts.days <= reviews_per_day)
    # lexicographic: cost, reviews, -block, -review (np.lexsort sorts by the last key first)
    keys = (-np.broadcast_to(r, cost.shape)[allowed], -np.broadcast_to(b, cost.shape)[allowed],
            reviewed[allowed], cost[allowed])
    best = np.lexsort(keys)[0]
    block, review = (int(v[allowed][best]) for v in np.broadcast_arrays(b, r))
    return outcome(counts, costs, block, review)
