import numpy as np
import pytest

from fraudscore.scoring.thresholds import Thresholds, choose, to_scores


def test_scores_are_rounded_percentages_clipped_to_0_100():
    assert to_scores(np.array([0.0, 0.004, 0.005, 0.5, 0.999, 1.0])).tolist() == [0, 0, 0, 50, 100, 100]


def test_decisions_follow_the_band():
    th = Thresholds(block=60, review=30)
    assert [th.decide(s) for s in (0, 29, 30, 59, 60, 100)] == [
        "approve", "approve", "review", "review", "block", "block"]


def test_invalid_thresholds_are_refused():
    with pytest.raises(ValueError):
        Thresholds(block=20, review=40)
    with pytest.raises(ValueError):
        Thresholds(block=101, review=1)


def test_block_threshold_maximises_f1_and_review_band_respects_budget():
    rng = np.random.default_rng(0)
    legit = np.r_[rng.integers(0, 15, 10_000), [50] * 5]
    fraud = np.r_[rng.integers(60, 101, 30), [20] * 10]
    scores, y = np.r_[legit, fraud], np.r_[np.zeros(legit.size), np.ones(fraud.size)]
    th = choose(scores, y, review_budget=0.005)
    # F1 is best (0.94) for any threshold in 15..20; ties go to the higher one
    assert th.block == 20
    # scores 15-19 hold nobody; score 14 alone holds ~670 transactions, beyond 0.5% of traffic
    assert th.review == 15


def test_review_band_holds_nobody_when_the_budget_is_zero():
    scores = np.r_[np.full(1_000, 10), np.full(10, 90)]
    y = np.r_[np.zeros(1_000), np.ones(10)]
    th = choose(scores, y, review_budget=0.0)
    assert th.block == 90
    assert not ((scores >= th.review) & (scores < th.block)).any()
