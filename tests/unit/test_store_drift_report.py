"""Drift in ``make report``: PSI per model version over the decision log's window, against the
model entry's training reference."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from fraudscore import artifact
from fraudscore.features import FEATURES
from fraudscore.store.drift_report import drift
from fraudscore.store.report import main
from tests.storetools import rec, write

NOW = datetime(2026, 6, 1, tzinfo=UTC)
V14 = FEATURES.index("V14")


def _psi(edges, proportions, values) -> float:
    """PSI written out from its definition, for the check."""
    bins = np.searchsorted(edges, values, side="right")
    actual = np.bincount(bins, minlength=len(proportions)) / len(values)
    e, a = np.maximum(proportions, 1e-4), np.maximum(actual, 1e-4)
    return float(((a - e) * np.log(a / e)).sum())


@pytest.fixture
def logged(store, trained, stand_in):
    """2,000 decisions of the trained model, V14 shifted by +4 (a broken feed); 1,000 older ones
    outside the window; 10 of a version this machine does not have."""
    X = stand_in.X[:3_000].copy()
    X[:2_000, V14] += 4.0
    at = NOW - timedelta(hours=1)
    write(store, [rec(f"tx-{i}", 1, at=at, version=trained.tag, features=X[i]) for i in range(2_000)]
          + [rec(f"old-{i}", 1, at=NOW - timedelta(days=60), version=trained.tag, features=X[i])
             for i in range(2_000, 3_000)]
          + [rec(f"gone-{i}", 1, at=at, version="fraud_detector:gone") for i in range(10)])
    return X[:2_000]


def test_drift_per_version_against_the_entrys_reference(store, trained, logged):
    ref = artifact.load(trained.tag).serving["drift_reference"]
    rows = drift(store, timedelta(days=30), NOW, lambda v: ref if v == trained.tag else None)
    by_version = {r["model_version"]: r for r in rows}  # ordered by version: the tag is random
    gone, ours = by_version["fraud_detector:gone"], by_version[trained.tag]
    assert gone["decisions"] == 10 and "no drift reference" in gone["unavailable"]
    assert ours["decisions"] == ours["rows"] == 2_000
    v14 = ref["features"]["V14"]
    assert next(iter(ours["features"])) == "V14"  # the highest first
    expected = _psi(v14["edges"], v14["proportions"], logged[:, V14])
    assert ours["features"]["V14"] == pytest.approx(expected, abs=1e-4)
    assert ours["features"]["V14"] > 0.25
    assert all(v < 0.1 for k, v in ours["features"].items() if k != "V14")  # the rest as in training
    assert "Time" not in ours["features"]
    # every score was 1: the score bin 1 holds everything, a major shift from the validation scores
    assert ours["score_psi"] > 0.25
    capped = {r["model_version"]: r for r in drift(store, timedelta(days=30), NOW, lambda v: ref, rows=500)}
    assert capped[trained.tag]["rows"] == 500


def test_the_report_prints_drift_from_the_local_model_store(store, store_url, trained, logged, capsys):
    assert main(["--store", store_url, "--window", "400d", "--format", "json"]) == 0
    data = {r["model_version"]: r for r in json.loads(capsys.readouterr().out)["drift"]}
    assert data[trained.tag]["rows"] == 3_000 and data[trained.tag]["features"]["V14"] > 0.25
    assert "unavailable" in data["fraud_detector:gone"]
    assert main(["--store", store_url, "--window", "400d"]) == 0
    out = capsys.readouterr().out
    assert "Drift against the training reference" in out and "V14" in out and "(major)" in out
