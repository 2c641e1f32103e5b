"""Drift (PSI), out-of-distribution warnings and target-rate thresholds."""

import dataclasses
import json
import logging

import numpy as np
import pytest

from fraudscore import artifact
from fraudscore.features import FEATURES
from fraudscore.ops.drift import DriftWindow, psi, reference
from fraudscore.schemas import FraudScoreOut
from fraudscore.scoring import watch as watch_module
from fraudscore.scoring.adaptive import TargetRate
from fraudscore.scoring.scorer import DRIFT_FEATURES, Scorer
from fraudscore.scoring.thresholds import Thresholds
from fraudscore.settings import ConfigError, Settings, load_settings
from fraudscore.training.trainer import alert_rates


def _settings(**kw) -> Settings:
    return Settings(_env_file=None, **kw)


def _normal(rng, n, shift=0.0):
    X = rng.standard_normal((n, len(FEATURES))) + shift
    scores = np.clip(np.rint(rng.exponential(3.0, n) + shift * 10), 0, 100).astype(np.int64)
    return X, scores


# --- PSI ---------------------------------------------------------------------------------------

def test_psi_of_identical_distributions_is_zero_and_grows_with_the_shift():
    e = np.array([0.1] * 10)
    assert psi(e, e) == pytest.approx(0.0)
    assert psi(e, np.r_[[0.2] * 5, [0.0] * 5]) > 0.25  # half the bins emptied: a major shift
    assert 0 < psi(e, np.r_[[0.11] * 5, [0.09] * 5]) < 0.1  # +-10% per bin: below the first band


def test_a_window_of_the_training_population_stays_near_zero_and_a_shift_shows():
    rng = np.random.default_rng(1)
    X, s = _normal(rng, 50_000)
    ref = reference(X, FEATURES, s)
    window = DriftWindow(ref, FEATURES, size=10_000)
    assert window.psi() is None  # too few rows to say anything
    window.add(*_normal(rng, 10_000))
    features, score = window.psi()
    assert features.shape == (len(FEATURES),) and features.max() < 0.02 and score < 0.02
    window.add(*_normal(rng, 10_000, shift=1.0))  # one standard deviation: the whole window moves
    features, score = window.psi()
    assert features.min() > 0.25 and score > 0.25
    window.add(*_normal(rng, 10_000))  # back: the shifted rows have left the window
    assert window.psi()[0].max() < 0.02


def test_the_sliding_counts_equal_a_recount_of_the_last_rows():
    rng = np.random.default_rng(2)
    X0, s0 = _normal(rng, 5_000)
    ref = reference(X0, FEATURES, s0)
    window = DriftWindow(ref, FEATURES, size=1_500)
    Xs, ss = [], []
    for n in (700, 1, 900, 64, 2_000, 333):  # blocks smaller and larger than the window
        X, s = _normal(rng, n, shift=rng.uniform(-1, 1))
        window.add(X, s)
        Xs.append(X)
        ss.append(s)
    X, s = np.concatenate(Xs)[-1_500:], np.concatenate(ss)[-1_500:]
    fresh = DriftWindow(ref, FEATURES, size=1_500)
    fresh.add(X, s)
    assert window.filled == fresh.filled == 1_500
    assert np.array_equal(window._counts, fresh._counts)
    assert np.allclose(window.psi()[0], fresh.psi()[0])


def test_the_watch_counts_every_row_it_is_handed_single_or_in_blocks():
    """Single transactions (copied into the watch's buffer) and batches (kept by reference) all
    reach the window: its counts equal a window fed the same rows at once."""
    rng = np.random.default_rng(4)
    X0, s0 = _normal(rng, 5_000)
    ref = reference(X0, FEATURES, s0)
    # the served features (no Time), as the scorer watches them: the gauges it sets are the
    # process's own, and a Time series would outlive this test in the HTTP tier's /metrics
    watched = DRIFT_FEATURES
    window = DriftWindow(ref, watched, size=10_000)
    watch = watch_module.Watch("v", watched, window, None, lambda _t: None)
    Xs, ss = [], []
    for n in [1] * 700 + [64, 1, 1, 1_000, 3] + [1] * 900:  # crosses FOLD_ROWS several times
        X, s = _normal(rng, n, shift=0.3)
        Xs.append(X)
        ss.append(s)
        watch.add(X, s)
    watch.fold()
    fresh = DriftWindow(ref, watched, size=10_000)
    fresh.add(np.concatenate(Xs)[:, [FEATURES.index(f) for f in watched]], np.concatenate(ss))
    assert watch._drift.filled == fresh.filled == sum(len(s) for s in ss)
    assert np.array_equal(watch._drift._counts, fresh._counts)


def test_a_feature_with_ties_has_fewer_bins_and_no_false_drift():
    rng = np.random.default_rng(3)
    X, s = _normal(rng, 20_000)
    X[:, 0] = rng.choice([0.0, 1.0], 20_000, p=[0.95, 0.05])  # deciles collapse onto 0
    ref = reference(X, FEATURES, s)
    assert len(ref["features"][FEATURES[0]]["edges"]) < 9
    assert sum(ref["features"][FEATURES[0]]["proportions"]) == pytest.approx(1.0)
    window = DriftWindow(ref, FEATURES, size=5_000)
    X2, s2 = _normal(rng, 5_000)
    X2[:, 0] = rng.choice([0.0, 1.0], 5_000, p=[0.95, 0.05])
    window.add(X2, s2)
    assert window.psi()[0][0] < 0.01


# --- target-rate thresholds --------------------------------------------------------------------

def _scores(rng, n, scale=4.0):
    """Integer scores 0-100 with an exponential tail: share >= t is about exp(-t / scale)."""
    return np.clip(np.floor(rng.exponential(scale, n)), 0, 100).astype(np.int64)


def test_target_rate_converges_on_the_quantile_of_the_stream_and_stays_there():
    rng = np.random.default_rng(4)
    reference_scores = _scores(rng, 200_000)
    ctl = TargetRate(0.01, 20_000, alert_rates(reference_scores), Thresholds(block=30, review=25))
    start = ctl.thresholds.block
    assert ctl.low <= start <= ctl.high and ctl.thresholds.review == start - 5
    changes = 0
    assert (ctl.low, start, ctl.high) == (13, 19, 24)  # validation: share >= t is exp(-t / 4)
    for _ in range(40):  # a heavier tail than validation: the threshold must rise
        ctl.add(_scores(rng, 1_000, scale=4.6))
        changes += ctl.update() is not None
    expected = int(np.ceil(-4.6 * np.log(0.01)))  # share >= t is exp(-t / 4.6): 22
    assert abs(ctl.thresholds.block - expected) <= 1 and ctl.thresholds.block > start
    assert ctl.target / 1.25 <= ctl.rate_at(ctl.thresholds.block) <= ctl.target * 1.25
    assert changes <= 3  # moved, then held: no flip-flop on a steady stream
    assert ctl.thresholds.review == ctl.thresholds.block - 5


def test_target_rate_is_clamped_to_the_bounds_from_validation():
    rng = np.random.default_rng(5)
    rates = alert_rates(_scores(rng, 200_000))
    ctl = TargetRate(0.01, 5_000, rates, Thresholds(block=30, review=25))
    # bounds: validation alert rates of 4x and 0.25x the target
    assert rates[ctl.low] <= 0.04 < rates[ctl.low - 1] and rates[ctl.high] <= 0.0025 < rates[ctl.high - 1]
    ctl.add(np.full(5_000, 100))  # a broken feed: everything scores 100
    assert ctl.update() is not None and ctl.thresholds.block == ctl.high
    ctl.add(np.zeros(5_000, np.int64))  # everything scores 0
    assert ctl.update() is not None and ctl.thresholds.block == ctl.low


def test_target_rate_waits_for_enough_scores():
    ctl = TargetRate(0.002, 50_000, alert_rates(np.arange(101).repeat(10)), Thresholds(block=50, review=40))
    assert ctl.min_rows == 10_000  # about 20 blocks at the target
    ctl.add(np.full(9_999, 100))
    assert ctl.update() is None


# --- the scorer: warnings, watch, model_info ---------------------------------------------------

@pytest.fixture(scope="module")
def art(trained):
    return artifact.load(trained.tag, extra_files=(artifact.EXPLAIN_FILE,))


def test_the_model_entry_holds_the_references(art):
    ref = art.serving["drift_reference"]
    assert set(ref["features"]) == set(FEATURES)
    for f in ref["features"].values():
        assert len(f["proportions"]) == len(f["edges"]) + 1 and sum(f["proportions"]) == pytest.approx(1)
    rates = art.serving["threshold_reference"]["alert_rates"]
    assert len(rates) == 101 and rates[0] == 1.0 and bool(np.all(np.diff(rates) <= 0))


def test_warnings_name_features_outside_the_training_range(art, stand_in):
    scorer = Scorer(art, _settings())
    X = stand_in.X[:3].copy()
    stats = art.serving["feature_stats"]
    X[1, FEATURES.index("V14")] = -1e6
    X[1, FEATURES.index("Amount")] = stats["Amount"]["max"] + 1
    verdicts = scorer.verdicts(X, scorer.predict(X), ["a", "b", "c"])
    assert "warnings" not in verdicts[0] and "warnings" not in verdicts[2]
    assert verdicts[1]["warnings"] == [
        {"feature": "V14", "value": -1e6, "low": stats["V14"]["min"], "high": stats["V14"]["max"]},
        {"feature": "Amount", "value": stats["Amount"]["max"] + 1, "low": stats["Amount"]["min"],
         "high": stats["Amount"]["max"]}]
    for v in verdicts:  # the declared schema, omitted when none
        assert FraudScoreOut.model_validate(v).model_dump(exclude_none=True) == v


def test_an_entry_without_references_serves_without_drift_and_refuses_target_rate(art, caplog):
    serving = {k: v for k, v in art.serving.items() if k not in ("drift_reference", "threshold_reference")}
    old = dataclasses.replace(art, serving=serving)
    with caplog.at_level(logging.WARNING, logger="bentoml.fraudscore"):
        scorer = Scorer(old, _settings())
    assert scorer._watch is None and "no drift reference" in caplog.text
    assert scorer.model_info().drift.startswith("unavailable")
    with pytest.raises(ConfigError, match="no threshold reference"):
        Scorer(old, _settings(threshold_mode="target-rate", target_block_rate=0.01))


def test_target_rate_moves_the_scorer_logs_and_shows_it(art, stand_in, caplog, monkeypatch):
    from fraudscore.ops import metrics

    monkeypatch.setattr(watch_module, "FOLD_ROWS", 100)
    scorer = Scorer(art, _settings(threshold_mode="target-rate", target_block_rate=0.002,
                                   threshold_window=1_000))
    info = scorer.model_info()
    assert info.threshold_mode == "target-rate" and info.target_block_rate == 0.002
    assert info.thresholds_source == {"block": "target-rate", "review": "target-rate"}
    low, high = info.block_threshold_bounds["low"], info.block_threshold_bounds["high"]
    X = np.concatenate([stand_in.X[:3_000]] + [stand_in.X[stand_in.y == 1]] * 20)  # many frauds
    with caplog.at_level(logging.INFO, logger="bentoml.fraudscore"):
        for start in range(0, len(X), 50):
            chunk = X[start:start + 50]
            scorer.verdicts(chunk, scorer.predict(chunk), [None] * len(chunk))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("block threshold")]
    assert lines and "of the last 1000 scores" in lines[-1]
    block = scorer.thresholds.block
    assert low <= block <= high and scorer.model_info().thresholds["block"] == block
    assert metrics.BLOCK_THRESHOLD.labels(model_version=scorer.version)._value.get() == block


def test_target_rate_needs_its_rate():
    with pytest.raises(ValueError, match="FRAUD_TARGET_BLOCK_RATE"):
        _settings(threshold_mode="target-rate")


def test_target_rate_without_its_rate_stops_the_start(monkeypatch):
    monkeypatch.setenv("FRAUD_THRESHOLD_MODE", "target-rate")
    with pytest.raises(ConfigError, match="FRAUD_TARGET_BLOCK_RATE"):
        load_settings()


def test_serving_json_is_plain_json(art):
    json.dumps(art.serving["drift_reference"], allow_nan=False)  # no inf / nan edges
